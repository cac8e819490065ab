"""Stage 3, intra-domain transfer: split the target by confidence, then SSL on the target alone.

The adapted model predicts every target image (plain, and ``refine.views`` weak views), or the
VLM's zero-shot row does, or both (``refine.teacher``: ``teacher_probabilities``); the
confident part per class becomes labelled by its pseudo-labels (``split.csv``; label-free
statistics in ``split.json``), the rest unlabelled, the synthetic source is dropped, and the SSL
algorithm refines the classifier -> ``refine.safetensors``.
"""

from __future__ import annotations

import json
import logging

import torch
from torch.utils.data import Subset

from aa_core.confident_split import ConfidentSplit, Split
from aa_core.context import StageContext
from aa_core.contracts import SSLBatch
from aa_core.csv_cells import write_csv
from aa_core.data.loaders import Loaders
from aa_core.data.views import Views
from aa_core.errors import AAError
from aa_core.models.memory_format import channels_last
from aa_core.run_folder import write_atomic
from aa_core.trained import trained_model
from aa_core.training.loop import skip, train_part
from aa_core.training.predict import predict_probabilities
from aa_core.training.weights import save_weights
from aa_core.zero_shot import zero_shot_probabilities

logger = logging.getLogger("aa")

# below this mean score, the confident part is likely to hand SSL many wrong labels (docs/split.md)
RELIABLE_SCORE = 0.88


def ssl_batches(labelled, unlabelled):
    for l_batch, u_batch in zip(labelled, unlabelled):
        x_u = tuple(u_batch) if isinstance(u_batch, (list, tuple)) else (u_batch,)
        yield SSLBatch(x_l=tuple(l_batch[:-1]), y_l=l_batch[-1], x_u=x_u)


def teacher_probabilities(ctx: StageContext, predictor, images) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The class probabilities the split ranks, of the plain view and of ``refine.views`` weak views.

    ``adapted``: the adapted model's, :math:`p^{(v)}`. ``vlm``: the zero-shot row's :math:`q`, its
    one view (it sees the image through its own processor, not the run's augmentations).
    ``ensemble``: their mean, :math:`\\tfrac12 (p^{(v)} + q)` for each view :math:`v`.
    """
    r, fmt, accelerator, workers = ctx.config.refine, ctx.input_format, ctx.accelerator, ctx.config.data.num_workers
    if r.teacher == "vlm":
        return zero_shot_probabilities(ctx), []
    plain = predict_probabilities(predictor, Views(images, [fmt.plain()]), accelerator, num_workers=workers)
    views = [predict_probabilities(predictor, Views(images, [fmt.weak()]), accelerator, num_workers=workers) for _ in range(r.views)]
    if r.teacher == "ensemble":
        q = zero_shot_probabilities(ctx)
        plain, views = (plain + q) / 2, [(view + q) / 2 for view in views]
    return plain, views


def split_target(ctx: StageContext, predictor, images) -> tuple[Split, dict]:
    """The confident split, and its label-free statistics (how far to trust it)."""
    r = ctx.config.refine
    plain, views = teacher_probabilities(ctx, predictor, images)
    split = ConfidentSplit(r.strategy, r.confident_fraction, r.threshold, r.top_k, r.min_per_class)(plain, views, ctx.config.seed)
    agree = torch.ones(len(plain), dtype=torch.bool)
    for view in views:
        agree &= view.argmax(dim=1) == split.predicted
    counts = torch.bincount(split.pseudo_labels, minlength=len(ctx.categories)).tolist()
    stats = {
        "teacher": r.teacher,
        "strategy": r.strategy,
        "selected": len(split.confident),
        "selected_per_class": dict(zip(ctx.categories, counts)),
        "agreement": round(agree.float().mean().item(), 4),  # predictions unchanged under every weak view
        "selected_score": round(split.score[split.confident].mean().item(), 4),
    }
    stats["reliable"] = stats["selected_score"] >= RELIABLE_SCORE
    return split, stats


def run(ctx: StageContext) -> None:
    config, folder, accelerator = ctx.config, ctx.folder, ctx.accelerator
    fmt = ctx.input_format
    target = ctx.target
    adapted = accelerator.prepare_model(trained_model(ctx, "adapt"), evaluation_mode=True)
    images = ctx.prepared(target.paths)
    split, stats = split_target(ctx, adapted, images)
    if not stats["reliable"] and ctx.is_main:
        logger.warning(
            "the confident part looks unreliable: its images score %.2f on average (below %.2f) and %.0f%% of target "
            "predictions hold under weak views; refining may not help (try a stronger adapter, or --ssl none)",
            stats["selected_score"], RELIABLE_SCORE, 100 * stats["agreement"],
        )  # fmt: skip
    cls, options = ctx.implementation("ssl")
    steps = config.train.refine_steps
    context = ctx.training_context(steps)
    feed = cls.feed(options, context)
    network = cls.build_network(channels_last(accelerator.unwrap_model(adapted)), options)  # trained from here on
    algorithm = cls(options, network, context)
    unlabelled_set = torch.arange(len(images)) if feed.unlabelled == "all" else split.unconfident
    if len(unlabelled_set) == 0:
        raise AAError("the confident split leaves no unlabelled target images; lower refine.confident_fraction or refine.top_k")
    if ctx.is_main:
        write_split(ctx, target.names, split)
        write_atomic(folder.split_stats, json.dumps(stats, indent=2))

    loaders = Loaders(accelerator, config.seed, config.data.num_workers)
    labelled = Views(
        Subset(images, split.confident.tolist()),
        [fmt.view(v) for v in feed.labelled_views],
        labels=split.pseudo_labels.tolist(),
    )
    unlabelled = Views(Subset(images, unlabelled_set.tolist()), [fmt.view(v) for v in feed.unlabelled_views])

    def batches(done: int):
        drawn = ssl_batches(loaders(labelled, feed.labelled_batch_size), loaders(unlabelled, feed.unlabelled_batch_size))
        return skip(drawn, done)

    checkpoints = train_part(ctx, "refine", ctx.fingerprint, algorithm, batches, steps, config.ssl.name)
    save_weights(algorithm.predictor(), folder.weights("refine"), accelerator)
    checkpoints.remove()


def write_split(ctx: StageContext, names: list[str], split: Split) -> None:
    """``split.csv``: each image's predicted class (its pseudo-label where confident) and score."""
    confident = set(split.confident.tolist())
    rows = ([name, ctx.categories[split.predicted[i]], f"{split.score[i]:.4f}", int(i in confident)] for i, name in enumerate(names))
    write_csv(ctx.folder.split, ["image", "pseudo_label", "score", "confident"], rows)
