"""The run, top to bottom: prompts -> generate -> adapt -> refine -> evaluate.

Each stage's fingerprint covers its own inputs and its upstream stage's fingerprint, so a stage
is reused exactly when nothing it depends on changed: ``aa run --ssl mixmatch`` after
``aa run --ssl fixmatch`` reruns refine and evaluate only, and a run killed mid-way resumes at
the stage it was in.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import yaml

import aa_core
from aa_core.config import Config
from aa_core.data.image_folder import open_image_folder
from aa_core.errors import AAError
from aa_core.plugins import plugin_manager
from aa_core.run_folder import RunFolder, fingerprint, write_atomic
from aa_core.stages import adapt, evaluate, generate, prompts, refine
from aa_core.stages.context import NONE, StageContext

STAGES = {"prompts": prompts, "generate": generate, "adapt": adapt, "refine": refine, "evaluate": evaluate}
DERIVED_KEYS = ("plugins", "environment")  # written to config.yaml for the record, not read back


def active_stages(config: Config) -> list[str]:
    """Stages this configuration runs: no prompts or generation for a real source, no refine without SSL."""
    skip = set()
    if config.data.source is not None:
        skip |= {"prompts", "generate"}
    if config.ssl.name == NONE:
        skip.add("refine")
    return [stage for stage in STAGES if stage not in skip]


def chosen_kinds(config: Config) -> list[str]:
    kinds = ["prompter", "generator"] if config.data.source is None else []
    kinds += [kind for kind in ("uda", "ssl") if getattr(config, kind).name != NONE]
    return kinds


def fingerprints(ctx: StageContext) -> dict[str, str]:
    out, upstream = {}, None
    for stage in active_stages(ctx.config):
        upstream = out[stage] = fingerprint({"inputs": STAGES[stage].inputs(ctx), "upstream": upstream})
    return out


def read_config(folder: RunFolder) -> dict:
    """The config a run folder was made with, less the derived record."""
    if not folder.config.exists():
        raise AAError(f"{folder.root} is not a run folder (no config.yaml); start one with `aa run --out {folder.root}`")
    data = yaml.safe_load(folder.config.read_text()) or {}
    return {k: v for k, v in data.items() if k not in DERIVED_KEYS}


def write_config(ctx: StageContext) -> None:
    record = ctx.config.model_dump(mode="json")
    record["plugins"] = {kind: ctx.version(kind) for kind in chosen_kinds(ctx.config)}
    record["environment"] = {"adapt_anything": aa_core.__version__, "python": platform.python_version()}
    write_atomic(ctx.folder.config, yaml.safe_dump(record, sort_keys=False))


def run(config: Config, root: str | Path, only: list[str] | None = None) -> dict:
    """Run the ``only`` stages (default: all active ones) in ``root``; return the metrics."""
    folder = RunFolder(root)
    folder.create()
    ctx = StageContext(config, folder)
    hook = plugin_manager().hook
    for kind in chosen_kinds(config):  # fail on a bad name, option or folder before any work
        ctx.implementation(kind)
    ctx.target  # noqa: B018  (scans the target folder: a bad one fails here)
    if config.data.source is not None:
        open_image_folder(config.data.source, config.task.categories)
    fps = fingerprints(ctx)
    inactive = [s for s in only or [] if s not in fps]
    if inactive:
        why = "with a real --source" if inactive[0] in ("prompts", "generate") else "with --ssl none"
        raise AAError(f"stage {inactive[0]} does not run {why}; change the config or pick another stage")
    wanted = [s for s in fps if only is None or s in only]
    check_upstream(folder, fps, wanted)
    write_config(ctx)
    hook.aa_run_start(run_dir=folder.root, config=config.model_dump(mode="json"))
    for stage in wanted:
        if folder.is_current(stage, fps[stage]):
            hook.aa_stage_end(stage=stage, run_dir=folder.root, seconds=0.0, reused=True)
            continue
        for later in list(fps)[list(fps).index(stage) :]:  # this stage and all after it are stale now
            folder.forget(later)
        hook.aa_stage_start(stage=stage, run_dir=folder.root)
        started = time.perf_counter()
        STAGES[stage].run(ctx)
        seconds = time.perf_counter() - started
        folder.complete(stage, fps[stage], seconds)
        hook.aa_stage_end(stage=stage, run_dir=folder.root, seconds=seconds, reused=False)
    metrics = record_seconds(folder, fps)
    hook.aa_run_end(run_dir=folder.root, metrics=metrics)
    return metrics


def check_upstream(folder: RunFolder, fps: dict[str, str], wanted: list[str]) -> None:
    """A stage that will run needs every earlier stage complete for the same inputs, or running too."""
    for stage in wanted:
        if folder.is_current(stage, fps[stage]):
            continue
        for upstream in list(fps)[: list(fps).index(stage)]:
            if upstream not in wanted and not folder.is_current(upstream, fps[upstream]):
                raise AAError(f"stage {upstream} is missing or out of date in {folder.root}; run `aa {upstream} {folder.root}` first")


def record_seconds(folder: RunFolder, fps: dict[str, str]) -> dict:
    """Add each stage's seconds to ``metrics.json`` (written by evaluate) and return it."""
    if "evaluate" not in fps or not folder.is_current("evaluate", fps["evaluate"]):
        return {}
    metrics = json.loads(folder.metrics.read_text())
    seconds = folder.seconds()
    metrics["seconds"] = {stage: seconds[stage] for stage in fps if stage in seconds}
    write_atomic(folder.metrics, json.dumps(metrics, indent=2))
    return metrics
