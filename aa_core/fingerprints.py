"""What each stage's result depends on, hashed: a stage is reused exactly when its fingerprint holds.

Each stage's fingerprint covers its own inputs (its config slice, the implementation and version
it uses, the files it reads) and its upstream stage's fingerprint, so a change anywhere reruns
that stage and every one after it, and nothing else. The pipeline, ``aa sweep`` (which shares a
completed stage between run folders whose fingerprints agree) and ``aa_core.runs`` read them here.
"""

from __future__ import annotations

from pathlib import Path

import aa_core
from aa_core.context import StageContext
from aa_core.credentials import blanked
from aa_core.run_folder import fingerprint, folder_digest


def prompts_inputs(ctx: StageContext) -> dict:
    c = ctx.config
    return {"seed": c.seed, "task": c.task.model_dump(), "prompts": c.prompts.model_dump(), "impl": ctx.version("prompter")}


def filters_fingerprint(ctx: StageContext) -> str:
    """Identity of the image filters turned on (names, options, versions); "" when none is."""
    chosen = {name: {"options": options.model_dump(mode="json"), "impl": ctx.distribution("filter", name)}
              for name, (_cls, options) in ctx.implementations("filter").items()}  # fmt: skip
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
    ``generator.model`` and its options but the memory and speed switches it declares
    (``speed_options``: slicing, tiling, offload, compile). Turning one of those on after running
    out of memory, or a patch upgrade, keeps every image made so far."""
    cls, options = ctx.implementation("generator")
    impl = ctx.version("generator")
    if "version" in impl:
        impl["version"] = release(impl["version"])
    pixels = {k: v for k, v in options.model_dump(mode="json").items() if k not in cls.speed_options}
    return {**impl, "model": ctx.config.generator.model, "options": pixels}


def generate_inputs(ctx: StageContext) -> dict:
    prompts = ctx.folder.prompts
    return {
        "seed": ctx.config.seed,
        # what changes the images or how many there are; not the batch size nor the speed switches
        "generator": ctx.config.generator.model_dump(include={"images_per_class", "retries"}),
        "maker": image_maker(ctx),
        "filters": filters_fingerprint(ctx),
        # the prompts as written, hand edits included (empty until the prompts stage has run)
        "prompts": fingerprint(prompts.read_text()) if prompts.exists() else "",
    }


def source_inputs(ctx: StageContext) -> dict:
    """The settings the source-only model depends on (the source's files aside)."""
    c = ctx.config
    train = c.train.model_dump(include={"batch_size", "mixed_precision"})
    data = c.data.model_dump(exclude={"num_workers", "cache_mb", "dev_fraction"})  # how, not what, is read
    model = c.model.model_dump()
    if isinstance(c.model.pretrained, str):  # a local checkpoint: its contents, not only its name
        checkpoint = Path(c.model.pretrained)
        model["checkpoint"] = fingerprint([checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns]) if checkpoint.is_file() else ""
    # the core builds and trains this network (its own backbones' shapes, the source-only loop): a
    # release of it that changes them retrains, where loading the old weights would fail
    core = release(aa_core.__version__)
    return {"seed": c.seed, "data": data, "model": model, "train": train, "source_only": c.source_only.model_dump(), "core": core}


def source_only_fingerprint(ctx: StageContext) -> str:
    """Identity of the source-only model: its settings and the source's files (names, sizes, times).

    The adapt stage keeps it apart in ``stages.json``: one source-only model serves every UDA
    algorithm trained from the same source.
    """
    data = ctx.config.data
    root = Path(data.source) if data.source is not None else ctx.folder.source
    return fingerprint({"inputs": source_inputs(ctx), "source": folder_digest(root)})


def adapt_inputs(ctx: StageContext) -> dict:
    data = ctx.config.data
    folders = {"target": folder_digest(ctx.target.root)}
    if data.source is not None:  # a synthetic source is covered by the generate stage's fingerprint
        folders["source"] = folder_digest(Path(data.source))
    return {
        "source_only": source_inputs(ctx),
        "folders": folders,
        "steps": ctx.config.train.steps,
        "select": ctx.config.train.model_dump(include={"select", "select_every"}),
        "uda": ctx.config.uda.model_dump(),
        "impl": ctx.version("uda"),
    }


def refine_inputs(ctx: StageContext) -> dict:
    c = ctx.config
    train = c.train.model_dump(include={"batch_size", "refine_steps"})
    refine = c.refine.model_dump(exclude={"keep"})  # the evaluation's choice, not the training's
    return {"seed": c.seed, "refine": refine, "ssl": c.ssl.model_dump(), "train": train, "impl": ctx.version("ssl")}


def evaluate_inputs(ctx: StageContext) -> dict:
    return {"dev_fraction": ctx.config.data.dev_fraction, "keep": ctx.config.refine.keep}


INPUTS = {
    "prompts": prompts_inputs,
    "generate": generate_inputs,
    "adapt": adapt_inputs,
    "refine": refine_inputs,
    "evaluate": evaluate_inputs,
}


def fingerprints(ctx: StageContext, stages: list[str]) -> dict[str, str]:
    """The fingerprint of each of ``stages`` (in order), chained: each covers the one before it."""
    out, upstream = {}, None
    for stage in stages:
        # of the inputs as config.yaml records them, credentials blanked: a config read back fingerprints the same
        upstream = out[stage] = fingerprint({"inputs": blanked(INPUTS[stage](ctx)), "upstream": upstream})
    return out
