"""The run, top to bottom: prompts -> generate -> adapt -> refine -> evaluate.

Each stage's fingerprint covers its own inputs and its upstream stage's fingerprint, so a stage
is reused exactly when nothing it depends on changed: ``aa run --ssl mixmatch`` after
``aa run --ssl fixmatch`` reruns refine and evaluate only, and a run killed mid-way resumes at
the stage it was in.

Under ``accelerate launch`` every process runs every stage, but only the main process writes
the run folder's shared files (``config.yaml``, ``stages.json``, prompts, metrics) and calls the
hooks; the others wait for it at the end of each stage and read what it wrote.
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
import time
from pathlib import Path

import yaml

import aa_core
from aa_core.blame import blame
from aa_core.config import Config
from aa_core.context import VLM_BACKBONE, StageContext
from aa_core.credentials import blanked
from aa_core.errors import AAError
from aa_core.fingerprints import fingerprints, source_only_fingerprint
from aa_core.kinds import KINDS, chosen
from aa_core.lock import writer_lock
from aa_core.needs import check_backbones, fill_defaults, reads_source
from aa_core.plugins import plugin_manager
from aa_core.run_folder import OUTPUTS, PARTS, REQUIRED, RunFolder, link_or_copy, strict_json, write_atomic
from aa_core.stages import STAGE_NAMES

STAGES = {name: importlib.import_module(f"aa_core.stages.{name}") for name in STAGE_NAMES}
DERIVED_KEYS = ("plugins", "environment")  # written to config.yaml for the record, not read back

logger = logging.getLogger("aa")


def synthesises(config: Config) -> bool:
    """Whether the run makes a synthetic source: no real one is given and some training reads one."""
    return config.data.source is None and reads_source(config)


def prompts_zero_shot(config: Config) -> bool:
    """Whether a VLM's zero-shot classifier reads the run's prompts (``aa_core.zero_shot``) without a synthetic source to make them for."""
    return config.data.source is None and bool(chosen(config, "vlm")) and config.vlm.template is None


def active_stages(config: Config) -> list[str]:
    """Stages this configuration runs: no prompts or generation for a real source or where no
    training reads a source (prompts still where a VLM reads them), no refine without SSL."""
    skip = set() if synthesises(config) else {"generate"} if prompts_zero_shot(config) else {"prompts", "generate"}
    if not chosen(config, "ssl"):
        skip.add("refine")
    return [stage for stage in STAGES if stage not in skip]


def chosen_kinds(config: Config) -> list[str]:
    """The kinds whose implementations this run loads."""
    stages = active_stages(config)
    unused = {"generator", "filter"} if "generate" not in stages else set()
    unused |= {"prompter"} if "prompts" not in stages else set()
    return [kind for kind in KINDS if chosen(config, kind) and kind not in unused]


def context(config: Config, root: str | Path) -> StageContext:
    """The stage context of ``config`` in run folder ``root``, with what it leaves to the algorithms settled."""
    ctx = StageContext(config.model_copy(deep=True), RunFolder(root))
    fill_defaults(ctx)
    return ctx


def read_config(folder: RunFolder) -> dict:
    """The config a run folder was made with, less the derived record."""
    if not folder.config.exists():
        raise AAError(f"{folder.root} is not a run folder (no config.yaml); start one with `aa run --out {folder.root}`")
    try:
        data = yaml.safe_load(folder.config.read_text()) or {}
    except yaml.YAMLError as exc:  # edited by hand: a tag that would build an object, a broken line
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise AAError(f"{folder.config} is not a config aa can read ({type(exc).__name__}{line}: {getattr(exc, 'problem', None) or exc}); "
                      "fix or remove that line, or start a new run folder") from None  # fmt: skip
    if not isinstance(data, dict):
        raise AAError(f"{folder.config} is not a mapping of settings; fix it, or start a new run folder")
    return {k: v for k, v in data.items() if k not in DERIVED_KEYS}


def write_config(ctx: StageContext) -> None:
    """``config.yaml``: every setting as the run resolved it, each implementation's options with their defaults."""
    record = ctx.config.model_dump(mode="json")
    for kind in chosen_kinds(ctx.config):
        section = record[KINDS[kind].section]
        for name, (_cls, options) in ctx.implementations(kind).items():
            resolved = options.model_dump(mode="json")
            if KINDS[kind].several:
                section[name] = resolved
            else:
                section.update(resolved)
    record = blanked(record)  # no password of a URL option on disk
    record["plugins"] = {kind: ctx.version(kind) for kind in chosen_kinds(ctx.config) if not KINDS[kind].several}
    for kind in (k for k in chosen_kinds(ctx.config) if KINDS[k].several):
        record["plugins"][kind] = {name: ctx.distribution(kind, name) for name in chosen(ctx.config, kind)}
    record["environment"] = {"adapt_anything": aa_core.__version__, "python": platform.python_version()}
    write_atomic(ctx.folder.config, yaml.safe_dump(record, sort_keys=False))


def preflight(ctx: StageContext) -> None:
    """Fail on a bad name, option, backbone or folder before any work."""
    from aa_core.trackers import check_tracker

    config = ctx.config
    for kind in chosen_kinds(config):  # an unknown name or a bad option fails here
        ctx.implementations(kind)
    for tracker in config.track.trackers:
        check_tracker(tracker)
    if config.refine.keep == "zero_shot" and not ctx.active("vlm"):
        raise AAError("refine.keep=zero_shot keeps a vision-language model's zero-shot row; add --vlm clip --set vlm.model=...")
    if config.refine.keep == "refine" and not chosen(config, "ssl"):
        raise AAError("refine.keep=refine keeps the refined model, and this run does not refine; choose --ssl fixmatch or refine.keep=auto")
    if config.refine.teacher != "adapted" and not ctx.active("vlm") and chosen(config, "ssl"):
        raise AAError(f"refine.teacher={config.refine.teacher} needs a vision-language model; "
                      "add --vlm clip --set vlm.model=... or set refine.teacher=adapted")  # fmt: skip
    target = ctx.target  # scans the target folder: a bad one fails here
    if target.unreadable and ctx.is_main:
        shown = ", ".join(target.unreadable[:3]) + (", ..." if len(target.unreadable) > 3 else "")
        logger.warning(
            "skipped %d unreadable target image(s) in %s: %s (listed in %s)",
            len(target.unreadable), target.root, shown, ctx.folder.unreadable,
        )  # fmt: skip
        write_atomic(ctx.folder.unreadable, "".join(name + "\n" for name in target.unreadable))
    if config.data.source is not None:
        ctx.source  # noqa: B018  (scans a real source folder once: a bad one fails here)
    from aa_core.models.classifier import built_on_meta

    if config.model.backbone == VLM_BACKBONE or config.model.init is not None:  # no timm backbone: loaded when trained
        check_backbones(ctx, None)
        return
    backbone = built_on_meta(ctx.new_classifier).backbone  # the architecture (and pretrained weights' availability)
    check_backbones(ctx, backbone)
    documented = (getattr(backbone, "pretrained_cfg", None) or {}).get("input_size")
    if config.model.pretrained and documented and documented[-1] != config.data.image_size and ctx.is_main:
        logger.warning(
            "model.backbone %s was pretrained on %dx%d images and data.image_size is %d; set data.image_size=%d for its documented size",
            config.model.backbone, documented[-1], documented[-1], config.data.image_size, documented[-1],
        )  # fmt: skip


def check_upstream(folder: RunFolder, fps: dict[str, str], wanted: list[str]) -> None:
    """A stage that will run needs every earlier stage complete for the same inputs, or running too."""
    for stage in wanted:
        if folder.is_current(stage, fps[stage]):
            continue
        for upstream in list(fps)[: list(fps).index(stage)]:
            if upstream not in wanted and not folder.is_current(upstream, fps[upstream]):
                raise AAError(f"stage {upstream} is missing or out of date in {folder.root}; run `aa {upstream} {folder.root}` first")


def stale_from(folder: RunFolder, fps: dict[str, str], wanted: list[str]) -> list[str]:
    """The wanted stages that run: the first one not current, and every wanted one after it."""
    for i, stage in enumerate(wanted):
        if not folder.is_current(stage, fps[stage]):
            return wanted[i:]
    return []


def run(config: Config, root: str | Path, only: list[str] | None = None, until: str | None = None, adopt: bool = False) -> dict:
    """Run the ``only`` stages (default: all active ones, up to ``until``) in ``root``; return the metrics.

    An existing ``root`` that aa did not make is refused unless ``adopt`` (``RunFolder.claim``).

    Fingerprints are computed again after each stage, so a stage's may cover what the stages
    before it wrote (the generation covers ``prompts.jsonl`` as written, hand edits included).
    Each stage starts from the run's seed, so its random draws do not depend on which stages ran
    before it in this process (a resumed run draws what an uninterrupted one drew).
    """
    ctx = context(config, root)
    config, folder = ctx.config, ctx.folder
    stages = active_stages(config)
    fps = fingerprints(ctx, stages)
    inactive = [s for s in [*(only or []), *([until] if until else [])] if s not in fps]
    if inactive:
        why = "with --ssl none"
        if inactive[0] in ("prompts", "generate"):
            why = "with a real --source" if config.data.source is not None else "where no training reads a source (model.init, uda shot)"
        raise AAError(f"stage {inactive[0]} does not run {why}; change the config or pick another stage")
    folder.create()
    folder.claim(adopt, move=ctx.is_main)  # a folder aa did not make: refused before anything is written, or adopted
    with writer_lock(folder.root, take=ctx.is_main):
        return run_stages(ctx, stages, fps, only, until)


def run_stages(ctx: StageContext, stages: list[str], fps: dict[str, str], only: list[str] | None, until: str | None) -> dict:
    """``run`` once the folder is this process's to write."""
    from accelerate.utils import set_seed

    config, folder = ctx.config, ctx.folder
    preflight(ctx)
    wanted = [s for s in fps if only is None or s in only]
    if until:
        wanted = wanted[: wanted.index(until) + 1]
    check_upstream(folder, fps, wanted)
    accelerator, main = ctx.accelerator, ctx.is_main
    hook = plugin_manager().hook if main else None
    if main:
        write_config(ctx)
        hook.aa_run_start(run_dir=folder.root, config=blanked(config.model_dump(mode="json")))
    to_run = stale_from(folder, fps, wanted)
    accelerator.wait_for_everyone()  # every process has read stages.json before it changes
    for stage in wanted:
        if stage not in to_run:
            if main:
                hook.aa_stage_end(stage=stage, run_dir=folder.root, seconds=0.0, reused=True)
            continue
        fps = fingerprints(ctx, stages)  # with what the stages before this one wrote
        if main:
            for later in stages[stages.index(stage) :]:  # this stage and all after it are stale now
                folder.mark_stale(later)
            hook.aa_stage_start(stage=stage, run_dir=folder.root)
        started = time.perf_counter()
        set_seed(config.seed)
        ctx.fingerprint = fps[stage]
        ctx.part_done = part_recorder(ctx, started)
        try:
            STAGES[stage].run(ctx)
        except Exception as exc:
            failure = blame(ctx, stage, exc)
            if failure is None:  # the user's error, a full disk, or the core's own bug: as it is
                raise
            raise failure from None
        accelerator.wait_for_everyone()
        seconds = time.perf_counter() - started
        if main:
            folder.mark_complete(stage, fps[stage], seconds)
            hook.aa_stage_end(stage=stage, run_dir=folder.root, seconds=seconds, reused=False)
    fps = fingerprints(ctx, stages)
    if main:
        record_seconds(folder, fps)
    accelerator.wait_for_everyone()
    metrics = read_metrics(folder, fps)
    if main:
        hook.aa_run_end(run_dir=folder.root, metrics=metrics)
    return metrics


def part_recorder(ctx: StageContext, started: float):
    """What a stage calls when a part of it is done (``PARTS``): recorded at once, so a stage
    interrupted after it keeps it."""

    def part_done(part: str, fp: str) -> None:
        assert part in PARTS, part
        if ctx.is_main:
            ctx.folder.mark_complete(part, fp, time.perf_counter() - started)

    return part_done


def share_stages(ctx: StageContext, donors: list[RunFolder]) -> list[str]:
    """Take from ``donors`` (other run folders) every leading stage one completed with this run's
    fingerprint, and the source-only model where one was trained with the same settings; return
    what was taken. Its outputs are linked or copied here (``link_or_copy``) and recorded as
    shared; the run then reuses them as its own (``aa sweep``)."""
    folder, stages, taken = ctx.folder, active_stages(ctx.config), []
    others = [d for d in donors if d.root != folder.root]
    for stage in stages:
        fps = fingerprints(ctx, stages)  # again after each: a stage's covers what the ones before it wrote
        if stage == PARTS["source_only"] and take(folder, "source_only", source_only_fingerprint(ctx), others):
            taken.append("source_only")  # shared wherever the source and its settings are the same
        if folder.is_current(stage, fps[stage]):
            continue
        if not take(folder, stage, fps[stage], others):
            break
        taken.append(stage)
    return taken


def take(folder: RunFolder, key: str, fp: str, donors: list[RunFolder]) -> bool:
    """Share stage or part ``key`` from the first donor that completed it for ``fp``, unless current here."""
    if folder.is_current(key, fp):
        return False
    donor = next((d for d in donors if d.is_current(key, fp)), None)
    if donor is None:
        return False
    for name in OUTPUTS.get(key, REQUIRED[key]):
        if (donor.root / name).exists():
            link_or_copy(donor.root / name, folder.root / name)
    folder.mark_complete(key, fp, donor.state()[key].get("seconds", 0.0), shared_from=donor.root)
    return True


def read_metrics(folder: RunFolder, fps: dict[str, str]) -> dict:
    if "evaluate" not in fps or not folder.is_current("evaluate", fps["evaluate"]):
        return {}
    return json.loads(folder.metrics.read_text())


def record_seconds(folder: RunFolder, fps: dict[str, str]) -> None:
    """Add each stage's seconds to ``metrics.json`` (written by evaluate)."""
    metrics = read_metrics(folder, fps)
    if metrics:
        seconds = folder.seconds()
        metrics["seconds"] = {stage: seconds[stage] for stage in fps if stage in seconds}
        write_atomic(folder.metrics, strict_json(metrics))
