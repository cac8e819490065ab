"""The step loop: draw a batch, call the algorithm's ``train_step``, show progress, log, save.

Every ``log_every`` steps the step's scalars go to ``train_log.jsonl`` and to the ``aa_log``
hook (trackers join it), from the main process. Every step's scalars must be finite: a NaN stops
training at the step it appears (``aa_core.blame``), where the last checkpoint is still sound.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from aa_core.blame import check_finite
from aa_core.plugins import plugin_manager
from aa_core.training.checkpoint import Checkpoints
from aa_core.training.progress import progress_bar


def run_steps(
    step_fn: Callable,
    batches: Iterable,
    steps: int,
    accelerator,
    desc: str,
    part: str,
    log_file: Path | None = None,
    log_every: int = 50,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[int], None] | None = None,
    save_every: int = 0,
    on_save: Callable[[int], None] | None = None,
    start: int = 0,
) -> dict[str, float]:
    """Call ``step_fn(batch, step)`` for steps ``start`` to ``steps - 1``; log its scalars every
    ``log_every`` steps, as training part ``part`` (``source_only``, ``adapt``, ``refine``: the
    names every hook receives); ``desc`` labels the progress bar (the algorithm's name).

    With ``on_checkpoint`` (choosing a checkpoint), call it with the number of steps done every
    ``checkpoint_every`` steps and after the last one; then, with ``on_save`` (saving the
    training state), every ``save_every`` steps but the last (the stage's result follows it).
    """
    logs: dict[str, float] = {}
    main = accelerator.is_main_process
    hook = plugin_manager().hook
    bar = progress_bar(total=steps, initial=start, desc=desc, disable=not accelerator.is_local_main_process)
    log = open(log_file, "a") if log_file and main else None
    try:
        for step, batch in zip(range(start, steps), batches):
            try:
                logs = step_fn(batch, step)
                check_finite(logs)
            except Exception as exc:  # noted for the one line naming the plugin and the step (aa_core.blame)
                exc.aa_step, exc.aa_module = step, getattr(step_fn, "__module__", None)
                raise
            bar.update()
            if step % log_every == 0 or step == steps - 1:
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                if main:
                    hook.aa_log(stage=part, step=step, scalars=logs)
                if log:
                    log.write(json.dumps({"stage": part, "step": step, **logs}) + "\n")
            if on_checkpoint and ((step + 1) % checkpoint_every == 0 or step == steps - 1):
                on_checkpoint(step + 1)
            if on_save and save_every and (step + 1) % save_every == 0 and step < steps - 1:
                if log:
                    log.flush()  # the checkpoint records the log's length, to cut what a resumed run logs again
                on_save(step + 1)
    finally:
        bar.close()
        if log:
            log.close()
    return logs


def skip(batches: Iterator, done: int) -> Iterator:
    """``batches`` with the first ``done`` drawn and dropped, now: the random states are loaded after."""
    for _ in range(done):
        next(batches)
    return batches


def train_part(
    ctx,
    part: str,
    fingerprint: str,
    algorithm,
    batches: Callable[[int], Iterator],
    steps: int,
    desc: str,
    *,
    selector=None,
    on_select: Callable[[int], None] | None = None,
) -> Checkpoints:
    """Train ``algorithm`` for ``steps`` steps, saving its state every ``train.checkpoint_every``
    and resuming from the last save of the same ``fingerprint``; ``batches(done)`` gives the
    batches from step ``done`` on. Returns the checkpoints, for the caller to remove once the
    part's result is saved."""
    config, accelerator = ctx.config, ctx.accelerator
    checkpoints = Checkpoints(ctx.folder.checkpoints / part, fingerprint, algorithm, accelerator, selector, ctx.folder.log)
    try:
        start, drawn = checkpoints.resume(lambda: batches(0), batches)
        run_steps(
            algorithm.train_step, drawn, steps, accelerator, desc, part, ctx.folder.log,
            checkpoint_every=config.train.select_every, on_checkpoint=on_select,
            save_every=config.train.checkpoint_every, on_save=checkpoints.save, start=start,
        )  # fmt: skip
    except Exception as exc:
        exc.aa_part = part  # the checkpoints stay: a fixed plugin resumes from the last one
        raise
    return checkpoints
