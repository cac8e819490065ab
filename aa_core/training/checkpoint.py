"""Training state saved every ``train.checkpoint_every`` steps: a killed run resumes mid-stage.

A checkpoint is the folder ``checkpoints/<part>/step-<n>/`` of the run folder, ``<part>`` one of
``source_only``, ``adapt``, ``refine``. It holds

* accelerate's ``save_state``: the models and optimizers the algorithm prepared, the gradient
  scaler; and every process's random states (Python, NumPy, torch, CUDA), ``random-<i>.pt``;
* ``training.pt``: what the algorithm holds beyond them, found among its attributes (the learning
  rate schedule of each ``Update``, each ``EMA``, each ``torch.Generator``) or declared by it
  (``extra_state``: CDTrans' pairs), the checkpoint selector's scores and best weights, and how long ``train_log.jsonl`` was;
* ``checkpoint.json``: the step, and the fingerprint of the stage's inputs it belongs to.

It is written under a hidden name and renamed whole once complete, so a kill while saving leaves
the previous checkpoint; the older ones are then removed, and all of the part's when it completes.
Everything is loaded with ``weights_only=True``.

Resuming at step :math:`k` rebuilds the algorithm as at step 0, replays the first :math:`k`
batches without training (``resume_batches``: every data loader, sampler and augmentation
worker ends where an uninterrupted run has it), then loads the saved state, random states last.
The replay starts from the random states the part started from (each checkpoint keeps them,
``random-<i>.pt``'s ``start``): augmentations drawn in this process (no loader workers) then
draw what they drew, though what ran before the part (source-only training, in the same stage)
does not run again; a loader fetches one batch ahead, so the batch after the checkpoint is one
of the replay's. On the CPU the resumed run's weights are bitwise those of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from aa_core.durable import sync_files
from aa_core.errors import AAError
from aa_core.plugins import plugin_manager
from aa_core.training.ema import EMA
from aa_core.training.optim import Update

logger = logging.getLogger("aa")
STEP = re.compile(r"step-(\d+)")


def random_states() -> dict:
    """This process's random states (Python, NumPy, torch, CUDA) in types ``weights_only`` loads.

    accelerate's ``save_state`` saves them too, but some of its releases load them with torch's
    ``weights_only`` default, fail on NumPy's array and go on without a word: a resume would then
    draw other numbers. These are ours to load.
    """
    kind, keys, position, has_gauss, cached = np.random.get_state()
    out = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_random_states(states: dict) -> None:
    kind, keys, position, has_gauss, cached = states["numpy"]
    random.setstate(states["python"])
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def held_state(algorithm) -> dict:
    """The algorithm's state that accelerate does not save: schedules, weight averages, its own extra."""
    out: dict = {"extra": algorithm.extra_state()}
    for name, value in vars(algorithm).items():
        if isinstance(value, Update) and value.scheduler is not None:
            out[name] = value.scheduler.state_dict()
        elif isinstance(value, EMA):
            out[name] = {"module": value.module.state_dict(), "updates": value.updates}
        elif isinstance(value, torch.Generator):
            out[name] = value.get_state()
    return out


def load_held_state(algorithm, state: dict) -> None:
    for name, value in vars(algorithm).items():
        if isinstance(value, Update) and value.scheduler is not None:
            value.scheduler.load_state_dict(state[name])
        elif isinstance(value, EMA):
            value.module.load_state_dict(state[name]["module"])
            value.updates = state[name]["updates"]
        elif isinstance(value, torch.Generator):
            value.set_state(state[name])
    algorithm.load_extra_state(state["extra"])


class Checkpoints:
    """The checkpoints of one training part; ``save(step)``, ``resume(...)``, ``remove()``.

    ``selector`` (a ``CheckpointSelector``) is saved with them; ``log`` is ``train_log.jsonl``,
    cut back on resume to its length at the checkpoint, so no step is logged twice.
    """

    def __init__(self, folder: Path, fingerprint: str, algorithm, accelerator, selector=None, log: Path | None = None):
        self.folder = folder
        self.fingerprint = fingerprint
        self.algorithm = algorithm
        self.accelerator = accelerator
        self.selector = selector
        self.log = log
        self.start: dict | None = None  # the random states the part started from (``resume`` sets them)

    def latest(self) -> tuple[int, Path] | None:
        """The last complete checkpoint of these inputs, or None."""
        found = []
        for path in self.folder.glob("step-*"):
            match = STEP.fullmatch(path.name)
            record = path / "checkpoint.json"
            if match and record.is_file() and json.loads(record.read_text()).get("fingerprint") == self.fingerprint:
                found.append((int(match.group(1)), path))
        return max(found) if found else None

    def resume(self, fresh: Callable[[], Iterator], replay: Callable[[int], Iterator]) -> tuple[int, Iterator]:
        """(first step, batches): from the last checkpoint (``replay(k)``: batches from step k on), else from 0."""
        latest = self.latest()
        if latest is None:
            self.remove()  # another inputs' checkpoints (this part's folder holds only what a run wrote)
            self.start = random_states()
            return 0, fresh()
        step, path = latest
        state = load_tensors(path / "training.pt", self.folder)
        load_held_state(self.algorithm, state["algorithm"])  # before the replay: CDTrans replays from its pairs
        if self.selector is not None:
            self.selector.load_state_dict(state["selector"])
        own = load_tensors(path / f"random-{self.accelerator.process_index}.pt", self.folder)
        now, self.start = (own["now"], own["start"]) if "now" in own else (own, None)  # an older release kept ``now`` alone
        if self.start is not None:
            set_random_states(self.start)  # the replay draws what the part drew from its start
        batches = replay(step)
        self.accelerator.load_state(str(path))  # random states last: the replay drew from them
        set_random_states(now)
        if self.log is not None and self.accelerator.is_main_process and self.log.exists():
            with open(self.log, "r+") as f:
                f.truncate(min(state["log_bytes"], os.path.getsize(self.log)))
        logger.info("resuming from the checkpoint at step %d (%s)", step, path)
        return step, batches

    def save(self, step: int) -> None:
        """Save the state after ``step`` steps; every process calls it."""
        accelerator, main = self.accelerator, self.accelerator.is_main_process
        final = self.folder / f"step-{step:08d}"
        tmp = self.folder / f".step-{step:08d}.partial"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)  # a save a kill cut short
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        torch.save({"now": random_states(), "start": self.start}, tmp / f"random-{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()  # every process's files are in before the folder is published
        if main:
            state = {
                "algorithm": held_state(self.algorithm),
                "selector": self.selector.state_dict() if self.selector is not None else None,
                "log_bytes": os.path.getsize(self.log) if self.log is not None and self.log.exists() else 0,
            }
            torch.save(state, tmp / "training.pt")
            (tmp / "checkpoint.json").write_text(json.dumps({"step": step, "fingerprint": self.fingerprint}))
            sync_files(tmp)
            os.replace(tmp, final)
            for path in self.folder.glob("step-*"):
                if path != final:
                    shutil.rmtree(path)
            plugin_manager().hook.aa_checkpoint(stage=self.folder.name, step=step, path=final)
        accelerator.wait_for_everyone()

    def remove(self) -> None:
        """Remove this part's checkpoints (and ``checkpoints/`` once empty); main process."""
        if not self.accelerator.is_main_process:
            return
        for path in [*self.folder.glob("step-*"), *self.folder.glob(".step-*.partial")]:  # only what a save writes
            shutil.rmtree(path)
        for folder in (self.folder, self.folder.parent):
            try:
                folder.rmdir()
            except OSError:  # missing, or still holding another part's checkpoints
                pass


def load_tensors(path: Path, folder: Path) -> dict:
    """A checkpoint file of tensors and plain values; one line for one that holds anything else (a
    pickled object, which weights-only loading refuses to run) or is not a checkpoint at all."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise AAError(f"{path} is not a checkpoint of tensors aa wrote ({type(exc).__name__}: {reason}); "
                      f"delete {folder} and the stage starts afresh") from None  # fmt: skip
