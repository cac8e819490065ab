"""Stage 2, inter-domain transfer: labelled source + unlabelled target -> ``adapt.safetensors``.

First the classifier is trained on the source alone (``source_only.safetensors``, the baseline
and the starting point); then the UDA algorithm continues from it. ``--uda none`` stops after the
first part. The source-only model is kept and reused while only the UDA algorithm changes.
"""

from __future__ import annotations

import json

from aa_core.context import StageContext
from aa_core.contracts import UDAData
from aa_core.data.loaders import Loaders
from aa_core.data.views import Views
from aa_core.fingerprints import source_only_fingerprint
from aa_core.needs import reads_source
from aa_core.run_folder import write_atomic
from aa_core.selection import CheckpointSelector, EnsembleSelector
from aa_core.source_only import SourceOnly
from aa_core.training.loop import skip, train_part
from aa_core.training.predict import predict_probabilities
from aa_core.training.weights import load_weights, save_weights
from aa_core.zero_shot import zero_shot_probabilities


def run(ctx: StageContext) -> None:
    config, folder, accelerator = ctx.config, ctx.folder, ctx.accelerator
    if ctx.active("vlm"):  # the zero-shot row first: a VLM that cannot load fails before any training
        zero_shot_probabilities(ctx)
    fmt = ctx.input_format
    source = ctx.source if reads_source(config) else None  # none read: the user's classifier, adapted from the target alone
    view = fmt.view(config.data.adapt_view)
    images = ctx.prepared(source.paths) if source else None
    target = ctx.prepared(ctx.target.paths)  # one Prepared for training and selection

    def views(chosen: list) -> tuple:
        """The source (None where none is read) and the target through ``chosen`` views."""
        return Views(images, chosen, labels=source.labels) if source else None, Views(target, chosen)

    data = UDAData(*views([view]), loaders=Loaders(accelerator, config.seed, config.data.num_workers))
    if config.data.adapt_view != "plain":  # deterministic views for algorithms that label or pair images (CDTrans)
        data.plain_source, data.plain_target = views([fmt.plain()])

    classifier = ctx.new_classifier()
    source_fp = source_only_fingerprint(ctx)
    if folder.is_current("source_only", source_fp):
        load_weights(classifier, folder.weights("source_only"))
    else:
        baseline = SourceOnly(config.source_only, classifier, ctx.training_context(config.source_only.steps))
        batches = lambda done: skip(baseline.batches(data), done)  # noqa: E731
        checkpoints = train_part(ctx, "source_only", source_fp, baseline, batches, config.source_only.steps, "source only")
        classifier = accelerator.unwrap_model(baseline.classifier)
        save_weights(classifier, folder.weights("source_only"), accelerator)
        ctx.part_done("source_only", source_fp)
        checkpoints.remove()

    if not ctx.active("uda"):
        save_weights(classifier, folder.weights("adapt"), accelerator)
        return
    cls, options = ctx.implementation("uda")
    if cls.needs.views:  # the views the algorithm asks for, in place of data.adapt_view's one (source-only training keeps it)
        data.source, data.target = views([fmt.view(name) for name in cls.needs.views])
        data.plain_source, data.plain_target = views([fmt.plain()])
    if not cls.needs.source:
        data.source = data.plain_source = None  # the algorithm adapts from the target alone
    algorithm = cls(options, cls.build_network(classifier, options), ctx.training_context(config.train.steps))
    selector, on_select = selection(ctx, algorithm, Views(target, [fmt.plain()]))
    batches = lambda done: algorithm.resume_batches(data, done)  # noqa: E731  (resume_batches(data, 0) is batches(data))
    checkpoints = train_part(
        ctx, "adapt", ctx.fingerprint, algorithm, batches, config.train.steps, config.uda.name, selector=selector, on_select=on_select
    )
    if selector:
        selector.restore(accelerator.unwrap_model(algorithm.predictor()))
        if ctx.is_main:
            write_atomic(folder.selection, json.dumps(selector.record(), indent=2))
    save_weights(algorithm.predictor(), folder.weights("adapt"), accelerator)
    checkpoints.remove()


def selection(ctx: StageContext, algorithm, target_views):
    """A checkpoint selector and its callback, or (None, None) when the last step's model is kept."""
    if ctx.config.train.select == "last":
        return None, None
    criterion = ctx.config.train.select
    if criterion == "ensv":  # ranks the checkpoints together: each is kept until the last is offered
        selector = EnsembleSelector(ctx.folder.checkpoints / "adapt-candidates", ctx.accelerator)
    else:
        selector = CheckpointSelector(criterion)

    def checkpoint(step: int) -> None:
        predictor = algorithm.predictor()
        probabilities = predict_probabilities(predictor, target_views, ctx.accelerator, num_workers=ctx.config.data.num_workers)
        selector.offer(step, probabilities, ctx.accelerator.unwrap_model(predictor))

    return selector, checkpoint
