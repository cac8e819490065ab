"""Stage 3, intra-domain transfer: split the target by confidence, then SSL on the target alone.

The adapted model predicts every target image; the confident part per class becomes labelled
by its pseudo-labels (``split.csv``), the rest unlabelled, the synthetic source is dropped, and
the SSL algorithm refines the classifier -> ``refine.safetensors``.
"""

from __future__ import annotations

import csv

import torch
from torch.utils.data import Subset

from aa_core.confident_split import ConfidentSplit
from aa_core.contracts import SSLBatch
from aa_core.data.input_format import InputFormat
from aa_core.data.loaders import Loaders
from aa_core.data.prepared import Prepared
from aa_core.data.views import Views
from aa_core.errors import AAError
from aa_core.stages.adapt import adapted_predictor, training_context
from aa_core.stages.context import StageContext
from aa_core.training.loop import run_steps
from aa_core.training.predict import predict_probabilities
from aa_core.training.weights import load_weights, save_weights


def inputs(ctx: StageContext) -> dict:
    c = ctx.config
    train = c.train.model_dump(include={"batch_size", "refine_steps"})
    return {"seed": c.seed, "refine": c.refine.model_dump(), "ssl": c.ssl.model_dump(), "train": train, "impl": ctx.version("ssl")}


def refined_predictor(ctx: StageContext) -> torch.nn.Module:
    """Rebuild the refined network (the SSL algorithm's predictor) and load its weights."""
    cls, options = ctx.implementation("ssl")
    return load_weights(cls.build_predictor(adapted_predictor(ctx), options), ctx.folder.weights("refine"))


def ssl_batches(labelled, unlabelled):
    for l_batch, u_batch in zip(labelled, unlabelled):
        x_u = tuple(u_batch) if isinstance(u_batch, (list, tuple)) else (u_batch,)
        yield SSLBatch(x_l=tuple(l_batch[:-1]), y_l=l_batch[-1], x_u=x_u)


def run(ctx: StageContext) -> None:
    config, folder, accelerator = ctx.config, ctx.folder, ctx.accelerator
    fmt = InputFormat(config.data)
    target = ctx.target
    predictor = accelerator.prepare_model(adapted_predictor(ctx), evaluation_mode=True)
    images = Prepared(target.images(), fmt.prepare())
    probabilities = predict_probabilities(predictor, Views(images, [fmt.plain()]), accelerator)
    split = ConfidentSplit(config.refine.confident_fraction)(probabilities)
    if len(split.unconfident) == 0:
        raise AAError("refine.confident_fraction leaves no unlabelled target images; set it below 1")
    if ctx.is_main:
        write_split(ctx, target.names, probabilities, split)

    steps = config.train.refine_steps
    cls, options = ctx.implementation("ssl")
    algorithm = cls(options, accelerator.unwrap_model(predictor), training_context(ctx, steps))
    loaders = Loaders(accelerator, config.seed, config.data.num_workers)
    labelled = Views(
        Subset(images, split.confident.tolist()),
        [fmt.view(v) for v in algorithm.labelled_views],
        labels=split.pseudo_labels.tolist(),
    )
    unlabelled = Views(Subset(images, split.unconfident.tolist()), [fmt.view(v) for v in algorithm.unlabelled_views])
    batches = ssl_batches(
        loaders(labelled, config.train.batch_size), loaders(unlabelled, algorithm.unlabelled_batch_size())
    )
    run_steps(algorithm.train_step, batches, steps, accelerator, config.ssl.name, folder.log)
    save_weights(algorithm.predictor(), folder.weights("refine"), accelerator)


def write_split(ctx: StageContext, names: list[str], probabilities: torch.Tensor, split) -> None:
    confident = set(split.confident.tolist())
    confidence, predicted = probabilities.max(dim=1)
    with open(ctx.folder.split, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "pseudo_label", "confidence", "confident"])
        for i, name in enumerate(names):
            writer.writerow([name, ctx.categories[predicted[i]], f"{confidence[i]:.4f}", int(i in confident)])
