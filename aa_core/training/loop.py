"""The step loop: draw a batch, call the algorithm's ``train_step``, show progress, log.

Every ``log_every`` steps the step's scalars go to ``train_log.jsonl`` and to the ``aa_log``
hook (trackers join it), from the main process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from aa_core.plugins import plugin_manager
from aa_core.training.progress import progress_bar


def run_steps(
    step_fn: Callable,
    batches: Iterable,
    steps: int,
    accelerator,
    desc: str,
    log_file: Path | None = None,
    log_every: int = 50,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Call ``step_fn(batch, step)`` ``steps`` times; log its scalars every ``log_every`` steps.

    With ``on_checkpoint``, call it with the number of steps done every ``checkpoint_every``
    steps and after the last one.
    """
    logs: dict[str, float] = {}
    main = accelerator.is_main_process
    hook = plugin_manager().hook
    bar = progress_bar(total=steps, desc=desc, disable=not accelerator.is_local_main_process)
    log = open(log_file, "a") if log_file and main else None
    try:
        for step, batch in zip(range(steps), batches):
            logs = step_fn(batch, step)
            bar.update()
            if step % log_every == 0 or step == steps - 1:
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                if main:
                    hook.aa_log(stage=desc, step=step, scalars=logs)
                if log:
                    log.write(json.dumps({"stage": desc, "step": step, **logs}) + "\n")
            if on_checkpoint and ((step + 1) % checkpoint_every == 0 or step == steps - 1):
                on_checkpoint(step + 1)
    finally:
        bar.close()
        if log:
            log.close()
    return logs
