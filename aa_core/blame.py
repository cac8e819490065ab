"""Whose failure it is: one line naming the plugin, its distribution, the stage and the step.

A plugin's exception would otherwise reach the user as a long traceback through the core, with
nothing saying which plugin raised it or where the run stood. The pipeline hands every exception
a stage raised (but the user errors, ``AAError``, which are one line already) to ``blame``: the
outermost frame of the traceback that lies in a plugin's package names the plugin (the method the
core called), the training loop has noted the step, and the whole traceback goes to
``error.log`` in the run folder, whose path the line gives. A failure in no plugin's code is the
core's own and keeps its traceback.

A training step whose loss (``Update``) or logged scalars are not finite raises ``NonFinite``:
training on from a NaN only spreads it through every weight, and the run would end with
chance-level predictions, exit status 0.
"""

from __future__ import annotations

import math
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from aa_core.errors import AAError, out_of_space
from aa_core.kinds import KINDS, chosen

ERROR_LOG = "error.log"
CHECKPOINT = re.compile(r"step-(\d+)")  # a checkpoint's folder (aa_core.training.checkpoint)
CORE = "adapt-anything"
# the kinds of implementation each stage calls (evaluate rebuilds the trained networks)
STAGE_KINDS = {
    "prompts": ("prompter",),
    "generate": ("generator", "filter"),
    "adapt": ("uda",),
    "refine": ("ssl",),
    "evaluate": ("uda", "ssl"),
}


class NonFinite(ArithmeticError):
    """A training step's loss or logged scalar ``name`` is NaN or infinite."""

    def __init__(self, name: str, value: float):
        super().__init__(f"{name} = {value}")
        self.name, self.value = name, value


class PluginFailure(AAError):
    """A plugin raised, or trained into non-finite numbers: the one line the user sees."""


def check_finite(scalars: dict) -> None:
    """Raise ``NonFinite`` for the first of ``scalars`` that is NaN or infinite."""
    for name, value in scalars.items():
        if not math.isfinite(value):
            raise NonFinite(name, float(value))


@dataclass(frozen=True)
class Suspect:
    """Code that may raise: an implementation the run chose, or a plugin's hook module."""

    who: str  # "ssl 'nanloss'", "hooks"
    distribution: str
    version: str
    package: str  # top-level package of its module

    def __str__(self) -> str:
        return f"{self.who} ({self.distribution} {self.version})"


def suspects(ctx, stage: str) -> list[Suspect]:
    """The implementations ``stage`` calls, then every loaded plugin's hook modules."""
    from aa_core.plugins import HOOKS_GROUP, plugin_manager

    manager, out = plugin_manager(), []
    for kind in STAGE_KINDS.get(stage, ()):
        for name in chosen(ctx.config, kind):
            info = manager.distribution_of(kind, name)
            if info is None:
                continue
            for ep in info.entry_points:
                if ep.group == KINDS[kind].group and ep.name == name:
                    out.append(Suspect(f"{kind} '{name}'", info.distribution, info.version, ep.module.split(".")[0]))
    for info in manager.plugins.values():
        if info.status == "loaded" and info.distribution != CORE:  # the core's own hooks are the core's
            out += [
                Suspect(f"a hook of {info.distribution}", info.distribution, info.version, ep.module.split(".")[0])
                for ep in info.entry_points
                if ep.group == HOOKS_GROUP
            ]
    return out


def culprit(exc: BaseException, candidates: list[Suspect]) -> Suspect | None:
    """The candidate owning the outermost frame of ``exc``'s traceback that lies in its package;
    else the owner of the training step that returned a non-finite scalar (the loop checked it)."""
    by_package: dict[str, Suspect] = {}
    for suspect in candidates:
        by_package.setdefault(suspect.package, suspect)
    modules = [frame.f_globals.get("__name__", "") for frame, _line in traceback.walk_tb(exc.__traceback__)]
    for module in [*modules, getattr(exc, "aa_module", None) or ""]:
        if module.split(".")[0] in by_package:
            return by_package[module.split(".")[0]]
    return None


def blame(ctx, stage: str, exc: Exception) -> PluginFailure | None:
    """The one-line failure of ``exc`` raised while ``stage`` ran, its traceback in ``error.log``;
    None where it is the user's own error, a full disk, or the core's (the caller re-raises it)."""
    if isinstance(exc, AAError) or out_of_space(exc):
        return None
    step, part = getattr(exc, "aa_step", None), getattr(exc, "aa_part", None)
    where = f"at {part or stage} step {step}" if step is not None else f"in the {stage} stage"
    log = write_log(ctx, stage, exc)
    if isinstance(exc, NonFinite):
        who = culprit(exc, suspects(ctx, stage))
        owner = str(who) if who else ("source-only training" if part == "source_only" else f"the {stage} stage")
        what = "loss" if exc.name == "loss" else f"value '{exc.name}'"
        kept = last_checkpoint(ctx, part)
        resume = f"the checkpoint at step {kept} is kept" if kept else "no checkpoint was saved before it"
        fix = "fix the plugin" if who else "lower the learning rate"
        return PluginFailure(
            f"{owner} gave a non-finite {what} ({exc.value}) {where}; {resume}: {fix} and rerun the same command "
            f"(details in {log})"
        )
    who = culprit(exc, suspects(ctx, stage))
    if who is None:
        return None
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    raised = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return PluginFailure(f"{who} raised {raised} {where}; the traceback is in {log}")


def write_log(ctx, stage: str, exc: BaseException) -> Path:
    """Append ``exc``'s traceback to the run folder's ``error.log`` (one per process under accelerate)."""
    index = ctx.accelerator.process_index if "accelerator" in vars(ctx) else 0
    path = ctx.folder.root / (ERROR_LOG if index == 0 else f"error-{index}.log")
    with open(path, "a") as f:
        f.write(f"--- {stage} stage, Python {sys.version.split()[0]}\n")
        f.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return path


def last_checkpoint(ctx, part: str | None) -> int | None:
    """The step of the newest training checkpoint of ``part`` in the run folder, if any."""
    if part is None:
        return None
    folder = ctx.folder.checkpoints / part
    steps = [int(m.group(1)) for p in folder.glob("step-*") if (m := CHECKPOINT.fullmatch(p.name))] if folder.is_dir() else []
    return max(steps, default=None)
