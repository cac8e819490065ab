"""Stage 4: predict the target with the final model -> ``predictions.csv`` and ``metrics.json``.

Accuracies are reported for every model the run trained, and only when the target folder has
labels; they are computed here, after all training, and nothing reads them back.
"""

from __future__ import annotations

import csv
import json

import torch

from aa_core.data.input_format import InputFormat
from aa_core.data.prepared import Prepared
from aa_core.data.views import Views
from aa_core.run_folder import write_atomic
from aa_core.stages.adapt import adapted_predictor, new_classifier
from aa_core.stages.context import NONE, StageContext
from aa_core.stages.refine import refined_predictor
from aa_core.training.predict import predict_probabilities
from aa_core.training.weights import load_weights


def inputs(ctx: StageContext) -> dict:
    return {}


def models(ctx: StageContext) -> dict[str, torch.nn.Module]:
    out = {"source_only": load_weights(new_classifier(ctx), ctx.folder.weights("source_only"))}
    out["adapt"] = adapted_predictor(ctx)
    if ctx.config.ssl.name != NONE:
        out["refine"] = refined_predictor(ctx)
    return out


def run(ctx: StageContext) -> None:
    accelerator = ctx.accelerator
    target = ctx.target
    fmt = InputFormat(ctx.config.data)
    images = Views(Prepared(target.images(), fmt.prepare()), [fmt.plain()])
    accuracy = {}
    probabilities = None
    for name, model in models(ctx).items():
        model = accelerator.prepare_model(model, evaluation_mode=True)
        probabilities = predict_probabilities(model, images, accelerator)
        if target.labels is not None:
            correct = probabilities.argmax(dim=1) == torch.tensor(target.labels)
            accuracy[name] = round(correct.float().mean().item(), 4)
    if not accelerator.is_main_process:
        return
    confidence, predicted = probabilities.max(dim=1)  # the last model is the final one
    with open(ctx.folder.predictions, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "predicted", "confidence"])
        for name, k, p in zip(target.names, predicted.tolist(), confidence.tolist()):
            writer.writerow([name, ctx.categories[k], f"{p:.4f}"])
    metrics = {"target_images": len(target.paths), "labelled_target": target.labels is not None}
    if accuracy:
        metrics["target_accuracy"] = accuracy
    write_atomic(ctx.folder.metrics, json.dumps(metrics, indent=2))
