"""Stage 2, inter-domain transfer: labelled source + unlabelled target -> ``adapt.safetensors``.

First the classifier is trained on the source alone (``source_only.safetensors``, the baseline
and the starting point); then the UDA algorithm continues from it. ``--uda none`` stops after the
first part. The source-only model is kept and reused while only the UDA algorithm changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from aa_core.contracts import TrainingContext, UDAData
from aa_core.data.input_format import InputFormat
from aa_core.data.loaders import Loaders
from aa_core.data.prepared import Prepared
from aa_core.data.target import Images
from aa_core.data.views import Views
from aa_core.models.classifier import build_classifier
from aa_core.run_folder import fingerprint, folder_digest, write_atomic
from aa_core.selection import CheckpointSelector
from aa_core.source_only import SourceOnly
from aa_core.stages.context import StageContext
from aa_core.training.loop import run_steps
from aa_core.training.predict import predict_probabilities
from aa_core.training.weights import load_weights, save_weights

OUTPUTS = ("source_only.safetensors", "adapt.safetensors", "selection.json", "train_log.jsonl")  # left in the run folder


def source_inputs(ctx: StageContext) -> dict:
    c = ctx.config
    train = c.train.model_dump(include={"batch_size", "mixed_precision"})
    data = c.data.model_dump(exclude={"num_workers", "dev_fraction"})
    model = c.model.model_dump()
    if isinstance(c.model.pretrained, str):  # a local checkpoint: its contents, not only its name
        checkpoint = Path(c.model.pretrained)
        model["checkpoint"] = fingerprint([checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns]) if checkpoint.is_file() else ""
    return {"seed": c.seed, "data": data, "model": model, "train": train, "source_only": c.source_only.model_dump()}


def source_only_fingerprint(ctx: StageContext) -> str:
    """Identity of the source-only model: its settings and the source's files (names, sizes, times)."""
    data = ctx.config.data
    root = Path(data.source) if data.source is not None else ctx.folder.source
    return fingerprint({"inputs": source_inputs(ctx), "source": folder_digest(root)})


def inputs(ctx: StageContext) -> dict:
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


def training_context(ctx: StageContext, steps: int) -> TrainingContext:
    return TrainingContext(
        accelerator=ctx.accelerator,
        num_classes=len(ctx.categories),
        total_steps=steps,
        batch_size=ctx.config.train.batch_size,
        pretrained_backbone=bool(ctx.config.model.pretrained),
        seed=ctx.config.seed,
    )


def new_classifier(ctx: StageContext, pretrained: bool | None = None) -> torch.nn.Module:
    return build_classifier(ctx.config.model, len(ctx.categories), ctx.config.data.channels, pretrained)


def adapted_predictor(ctx: StageContext) -> torch.nn.Module:
    """Rebuild the adapted network (its architecture is the UDA algorithm's) and load its weights."""
    predictor = new_classifier(ctx, pretrained=False)
    if ctx.active("uda"):
        cls, options = ctx.implementation("uda")
        predictor = cls.build_predictor(predictor, options)
    return load_weights(predictor, ctx.folder.weights("adapt"))


def run(ctx: StageContext) -> None:
    config, folder, accelerator = ctx.config, ctx.folder, ctx.accelerator
    fmt = InputFormat(config.data, config.model)
    source = ctx.source
    view = fmt.view(config.data.adapt_view)
    target = Prepared(ctx.target.images(), fmt.prepare())  # decoded once, for training and selection
    data = UDAData(
        source=Views(Prepared(Images(source.paths), fmt.prepare()), [view], labels=source.labels),
        target=Views(target, [view]),
        loaders=Loaders(accelerator, config.seed, config.data.num_workers),
    )

    classifier = new_classifier(ctx)
    source_fp = source_only_fingerprint(ctx)
    if folder.is_current("source_only", source_fp) and folder.weights("source_only").exists():
        load_weights(classifier, folder.weights("source_only"))
    else:
        baseline = SourceOnly(config.source_only, classifier, training_context(ctx, config.source_only.steps))
        run_steps(baseline.train_step, baseline.batches(data), config.source_only.steps, accelerator, "source only", folder.log)
        classifier = accelerator.unwrap_model(baseline.classifier)
        save_weights(classifier, folder.weights("source_only"), accelerator)
        if ctx.is_main:
            folder.complete("source_only", source_fp, 0.0)

    if not ctx.active("uda"):
        save_weights(classifier, folder.weights("adapt"), accelerator)
        return
    cls, options = ctx.implementation("uda")
    algorithm = cls(options, classifier, training_context(ctx, config.train.steps))
    selector, checkpoint = selection(ctx, algorithm, Views(target, [fmt.plain()]))
    steps = config.train.steps
    run_steps(
        algorithm.train_step, algorithm.batches(data), steps, accelerator, config.uda.name, folder.log,
        checkpoint_every=config.train.select_every, on_checkpoint=checkpoint,
    )  # fmt: skip
    if selector:
        selector.restore(accelerator.unwrap_model(algorithm.predictor()))
        if ctx.is_main:
            write_atomic(folder.selection, json.dumps(selector.record(), indent=2))
    save_weights(algorithm.predictor(), folder.weights("adapt"), accelerator)


def selection(ctx: StageContext, algorithm, target_views):
    """A checkpoint selector and its callback, or (None, None) when the last step's model is kept."""
    if ctx.config.train.select == "last":
        return None, None
    selector = CheckpointSelector(ctx.config.train.select)

    def checkpoint(step: int) -> None:
        predictor = algorithm.predictor()
        selector.offer(step, predict_probabilities(predictor, target_views, ctx.accelerator), ctx.accelerator.unwrap_model(predictor))

    return selector, checkpoint
