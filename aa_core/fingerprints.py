"""What each stage's result depends on, hashed: a stage is reused exactly when its fingerprint holds.

Every config field is classified once, in ``FIELDS``: the stages whose result it changes (each
that reads it), or ``None`` where it changes how the work is done, not what it makes (batch
sizes of inference, workers, caches, checkpoints, trackers). A stage's fingerprint covers

* the fields classified to it, as the validated config has them;
* each implementation it calls: its name, distribution and version, its options as resolved
  (defaults included: setting an option to its default keeps the result), and what its
  ``inputs()`` declares (a file it reads, a model's revision);
* the files it reads (the prompts as written, the source and target folders);
* its upstream stage's fingerprint, so a change anywhere reruns that stage and every one after it.

The source-only model is a part of the adapt stage with a fingerprint of its own (it serves
every UDA algorithm trained from the same source); so is the zero-shot row (``aa_core.zero_shot``:
it depends on the VLM, the texts and the target alone). ``tests/test_fingerprints.py`` fails on a
config field missing from ``FIELDS``. The pipeline, ``aa sweep`` (which shares a completed stage
between run folders whose fingerprints agree) and ``aa_core.runs`` read them here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aa_core
from aa_core.context import StageContext
from aa_core.credentials import blanked
from aa_core.run_folder import fingerprint, folder_digest

# config field (or a whole section) -> the parts whose result it changes; None: how, not what
FIELDS: dict[str, tuple[str, ...] | None] = {
    "seed": ("prompts", "generate", "source_only", "refine"),
    "task.categories": ("prompts", "source_only", "zero_shot"),  # the order is the labels' order: a real source's model too
    "task.domain": ("prompts", "generate", "zero_shot"),  # image filters and the VLM's template read it
    "task.description": ("prompts",),
    "prompts.name": ("prompts",),
    "prompts.model": ("prompts",),
    "prompts.per_class": ("prompts",),
    "generator.name": ("generate",),
    "generator.model": ("generate",),
    "generator.images_per_class": ("generate",),
    "generator.retries": ("generate",),
    "generator.batch_size": None,  # the images are the same whatever the batch
    "filters": ("generate",),
    "data.source": ("source_only",),
    "data.target": ("adapt",),
    "data.dev_fraction": ("evaluate",),  # which labels are reported as dev: no training reads them
    "data.image_size": ("source_only",),
    "data.channels": ("source_only",),
    "data.flip": ("source_only",),
    "data.fill": ("source_only",),
    "data.adapt_view": ("source_only",),
    "data.num_workers": None,
    "data.cache_mb": None,
    "model": ("source_only",),
    "train.batch_size": ("source_only", "refine"),
    "train.steps": ("adapt",),
    "train.refine_steps": ("refine",),
    "train.select": ("adapt",),
    "train.select_every": ("adapt",),
    "train.checkpoint_every": None,  # a resumed run's weights are bitwise an uninterrupted one's
    "train.mixed_precision": ("source_only",),
    "source_only": ("source_only",),
    "uda.name": ("adapt",),
    "refine.strategy": ("refine",),
    "refine.confident_fraction": ("refine",),
    "refine.threshold": ("refine",),
    "refine.top_k": ("refine",),
    "refine.min_per_class": ("refine",),
    "refine.views": ("refine",),
    "refine.teacher": ("refine",),
    "refine.keep": ("evaluate",),  # the evaluation's choice, not the training's
    "ssl.name": ("refine",),
    "vlm.name": ("zero_shot",),
    "vlm.template": ("zero_shot",),
    "vlm.batch_size": None,  # the logits are the same whatever the batch
    "track": None,
}
# the kind whose chosen implementation each part calls (the generator's identity is ``image_maker``)
IMPLEMENTED_BY = {"prompts": "prompter", "adapt": "uda", "refine": "ssl", "zero_shot": "vlm"}


def fields_of(config, part: str) -> dict[str, Any]:
    """The config fields classified to ``part``, by dotted name, as the validated config has them."""
    dumped = config.model_dump(mode="json")
    out = {}
    for key, parts in FIELDS.items():
        if parts and part in parts:
            section, _, name = key.partition(".")
            value = dumped[section]
            out[key] = value[name] if name else value
    return out


def implementation(ctx: StageContext, kind: str, name: str, cls: type, options) -> dict:
    """An implementation's identity: its release, options as resolved, and the ``inputs`` it declares."""
    return {**ctx.distribution(kind, name), "name": name, "options": options.model_dump(mode="json"), "inputs": cls.inputs(options)}


def implementations(ctx: StageContext, kind: str) -> dict:
    return {name: implementation(ctx, kind, name, cls, options) for name, (cls, options) in ctx.implementations(kind).items()}


def filters_fingerprint(ctx: StageContext) -> str:
    """Identity of the image filters turned on (names, options, versions, inputs); "" when none is."""
    chosen = implementations(ctx, "filter")
    return fingerprint(chosen) if chosen else ""


def release(version: str) -> str:
    """``major.minor`` of a version: a patch release must not change what a plugin makes."""
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(version)
    except InvalidVersion:
        return version
    return f"{parsed.major}.{parsed.minor}"


def image_maker(ctx: StageContext) -> dict:
    """What makes a synthetic image's pixels, part of its file name: the generator and its release,
    ``generator.model``, its options but the memory and speed switches it declares
    (``speed_options``: slicing, tiling, offload, compile) and its ``inputs``. Turning one of those
    switches on after running out of memory, or a patch upgrade, keeps every image made so far."""
    cls, options = ctx.implementation("generator")
    impl = {"name": ctx.config.generator.name, **ctx.distribution("generator", ctx.config.generator.name)}
    if "version" in impl:
        impl["version"] = release(impl["version"])
    pixels = {k: v for k, v in options.model_dump(mode="json").items() if k not in cls.speed_options}
    maker = {**impl, "model": ctx.config.generator.model, "options": pixels}
    declared = cls.inputs(options)
    return maker if declared is None else {**maker, "inputs": declared}


def part_inputs(ctx: StageContext, part: str) -> dict:
    """Everything ``part``'s result depends on but its upstream: fields, implementations, files."""
    c = ctx.config
    out: dict[str, Any] = {"fields": fields_of(c, part)}
    if part in IMPLEMENTED_BY:
        out["impl"] = implementations(ctx, IMPLEMENTED_BY[part]) or "none"
    if part == "generate":
        out["maker"], out["filters"] = image_maker(ctx), filters_fingerprint(ctx)
        prompts = ctx.folder.prompts  # as written, hand edits included (empty until the prompts stage has run)
        out["prompts"] = fingerprint(prompts.read_text()) if prompts.exists() else ""
    if part == "source_only":
        if isinstance(c.model.pretrained, str):  # a local checkpoint: its contents, not only its name
            checkpoint = Path(c.model.pretrained)
            out["checkpoint"] = fingerprint([checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns]) if checkpoint.is_file() else ""
        if c.model.init is not None:  # the user's classifier: its files' contents where it is a folder
            from aa_core.models.user_classifier import checkpoint_digest

            out["init"] = checkpoint_digest(c.model.init)
        if c.model.backbone == "vlm":  # the tower and the zero-shot head it starts from (the texts; not the target)
            out["vlm"] = {k: v for k, v in part_inputs(ctx, "zero_shot").items() if k != "target"}
        # the core builds and trains this network (its own backbones' shapes, the source-only loop): a
        # release of it that changes them retrains, where loading the old weights would fail
        out["core"] = release(aa_core.__version__)
    if part == "zero_shot":
        prompts = ctx.folder.prompts  # the texts, where they are the run's prompts (``aa_core.zero_shot.class_texts``)
        if c.vlm.template is None and c.data.source is None:
            out["prompts"] = fingerprint(prompts.read_text()) if prompts.exists() else ""
        out["target"] = folder_digest(ctx.target.root)
    if part == "refine" and c.refine.teacher != "adapted" and ctx.active("vlm"):
        out["zero_shot"] = zero_shot_fingerprint(ctx)  # the split's teacher
    if part == "evaluate" and ctx.active("vlm"):
        out["zero_shot"] = zero_shot_fingerprint(ctx)  # its row is one of the evaluation's
    if part == "adapt":
        out["source_only"] = part_inputs(ctx, "source_only")
        out["target"] = folder_digest(ctx.target.root)
        if c.data.source is not None:  # a synthetic source is covered by the generate stage's fingerprint
            out["source"] = folder_digest(Path(c.data.source))
    return out


def source_only_fingerprint(ctx: StageContext) -> str:
    """Identity of the source-only model: its settings and the source's files (names, sizes, times).

    The adapt stage keeps it apart in ``stages.json``: one source-only model serves every UDA
    algorithm trained from the same source.
    """
    from aa_core.needs import reads_source

    data = ctx.config.data
    root = Path(data.source) if data.source is not None else ctx.folder.source
    source = folder_digest(root) if reads_source(ctx.config) else None  # the user's classifier as it came: no source read
    return fingerprint({"inputs": blanked(part_inputs(ctx, "source_only")), "source": source})


def zero_shot_fingerprint(ctx: StageContext) -> str:
    """Identity of the zero-shot row: the VLM (its release, options, inputs), the texts, the categories and the target."""
    return fingerprint({"inputs": blanked(part_inputs(ctx, "zero_shot"))})


def fingerprints(ctx: StageContext, stages: list[str]) -> dict[str, str]:
    """The fingerprint of each of ``stages`` (in order), chained: each covers the one before it."""
    out, upstream = {}, None
    for stage in stages:
        # of the inputs as config.yaml records them, credentials blanked: a config read back fingerprints the same
        upstream = out[stage] = fingerprint({"inputs": blanked(part_inputs(ctx, stage)), "upstream": upstream})
    return out


def unclassified(config_cls) -> list[str]:
    """Config fields ``FIELDS`` does not classify (a section classified whole covers its fields)."""
    from pydantic import BaseModel

    missing = []
    for section, info in config_cls.model_fields.items():
        model = info.annotation
        if section in FIELDS:
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            missing.append(section)
            continue
        missing += [f"{section}.{name}" for name in model.model_fields if f"{section}.{name}" not in FIELDS]
    return missing

