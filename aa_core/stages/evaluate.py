"""Stage 4: choose the final model without labels, predict the target with it -> ``predictions.csv``
and ``metrics.json``.

Every model the run trained predicts the target, and the zero-shot row where a VLM is set
(``aa_core.zero_shot``); label-free criteria of its predictions are recorded (EnsV's against
the ensemble of all of them), and ``final_model.choose`` keeps one of them as the run's result
(``final`` in ``metrics.json``: the model, the runner-up, the rule and its reason).
Accuracies are reported for every model the run trained, and only when the target folder has
labels: ``target_accuracy`` on the test part of the labels, ``dev_accuracy`` on the development
part (``data.dev_fraction``; the one that tuning may read). They are computed here, after all
training, and nothing reads them back.
"""

from __future__ import annotations

import json

import torch

from aa_core.context import StageContext
from aa_core.csv_cells import read_csv, write_csv
from aa_core.data.views import Views
from aa_core.final_model import Evidence, choose, label_free
from aa_core.run_folder import MODELS, TRAINED, strict_json, write_atomic
from aa_core.selection import ensemble_agreement, pairwise_agreement
from aa_core.trained import last_trained, trained_model
from aa_core.training.predict import predict_probabilities
from aa_core.zero_shot import zero_shot_probabilities


def accuracy(predicted: torch.Tensor, labels: list[int], indices: list[int]) -> float:
    index = torch.tensor(indices, dtype=torch.long)
    return round((predicted[index] == torch.tensor(labels)[index]).float().mean().item(), 4)


def split_report(ctx: StageContext) -> dict:
    """The refine stage's split statistics, and (report only) how many of its pseudo-labels are right."""
    report = json.loads(ctx.folder.split_stats.read_text())
    target = ctx.target
    if target.labels is None:
        return report
    rows = read_csv(ctx.folder.split)
    confident = [i for i, row in enumerate(rows) if row["confident"] == "1"]
    pseudo = torch.tensor([ctx.categories.index(row["pseudo_label"]) for row in rows])
    for key, part in (("pseudo_label_accuracy", set(target.test)), ("dev_pseudo_label_accuracy", target.dev)):
        chosen = [i for i in confident if i in part]
        if chosen:
            report[key] = accuracy(pseudo, target.labels, chosen)
    return report


def models(ctx: StageContext) -> list[str]:
    """What the evaluation reports, in ``MODELS`` order: the zero-shot row where a VLM is set, the
    user's classifier as it came where source-only training changed it, then every network trained."""
    trained = TRAINED[: TRAINED.index(last_trained(ctx)) + 1]
    untouched = ctx.config.model.init is not None and ctx.config.source_only.steps != 0
    extra = {"zero_shot": ctx.active("vlm"), "init": untouched}
    return [name for name in MODELS if name in trained or extra.get(name)]


def run(ctx: StageContext) -> None:
    accelerator = ctx.accelerator
    target = ctx.target
    images = Views(ctx.prepared(target.paths), [ctx.input_format.plain()])
    test, dev, criteria, predictions = {}, {}, {}, {}
    total = None  # the candidates' summed probabilities: EnsV's ensemble
    for name in models(ctx):
        if name == "zero_shot":
            probabilities = zero_shot_probabilities(ctx)
        else:
            model = accelerator.prepare_model(trained_model(ctx, name), evaluation_mode=True)
            probabilities = predict_probabilities(model, images, accelerator, num_workers=ctx.config.data.num_workers)
        criteria[name], predictions[name] = label_free(probabilities), probabilities.max(dim=1)
        total = probabilities.float() if total is None else total + probabilities.float()
        if target.labels is not None:
            predicted = probabilities.argmax(dim=1)
            if target.test:
                test[name] = accuracy(predicted, target.labels, target.test)
            if target.dev:
                dev[name] = accuracy(predicted, target.labels, sorted(target.dev))
    hard = [predictions[name][1] for name in predictions]
    for name, ensv, agreement in zip(predictions, ensemble_agreement(hard, total), pairwise_agreement(hard)):
        criteria[name]["ensv"], criteria[name]["agreement"] = round(ensv, 6), round(agreement, 6)
    if not ctx.is_main:
        return
    reliable = json.loads(ctx.folder.split_stats.read_text())["reliable"] if ctx.active("ssl") else None
    final = choose(ctx.config.refine.keep, Evidence(criteria, reliable))
    confidence, predicted = predictions[final.model]
    rows = ([name, ctx.categories[k], f"{p:.4f}"] for name, k, p in zip(target.names, predicted.tolist(), confidence.tolist()))
    write_csv(ctx.folder.predictions, ["image", "predicted", "confidence"], rows)
    metrics = {"target_images": len(target.paths), "labelled_target": target.labels is not None}
    metrics["final"] = final.record()
    metrics["label_free"] = criteria
    if test:
        metrics["target_accuracy"] = test
        metrics["test_images"] = len(target.test)
    if dev:
        metrics["dev_accuracy"] = dev
        metrics["dev_images"] = len(target.dev)
    if target.unreadable:
        metrics["unreadable_target_images"] = len(target.unreadable)
    if ctx.active("ssl"):
        metrics["split"] = split_report(ctx)
    if ctx.config.train.select != "last" and ctx.active("uda"):
        metrics["model_selection"] = json.loads(ctx.folder.selection.read_text())
    if ctx.config.data.source is None and ctx.folder.prompts_usage.exists():
        metrics["prompts"] = json.loads(ctx.folder.prompts_usage.read_text())
    if ctx.config.data.source is None and ctx.folder.generation.exists():
        metrics["generation"] = json.loads(ctx.folder.generation.read_text())
    write_atomic(ctx.folder.metrics, strict_json(metrics))
