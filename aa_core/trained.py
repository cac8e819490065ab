"""The networks a run trained, rebuilt and loaded after any stage: the one place that knows how.

Each stage's network is the one before it, as the stage's algorithm builds it
(``TrainingAlgorithm.build_network``): the source-only classifier; the UDA algorithm's network
around it (MCD: two classifier heads); the SSL algorithm's around that. The refine stage, the
evaluation, ``aa predict`` and ``aa export`` all load through ``trained_model``.

Loading draws nothing from the random stream (the fresh weights it would draw are replaced at
once), so whatever a stage draws after loading a model is the same as if it had not loaded one.
"""

from __future__ import annotations

import json

import torch

from aa_core.context import StageContext
from aa_core.run_folder import MODELS, TRAINED
from aa_core.training.weights import load_weights


def last_trained(ctx: StageContext) -> str:
    """The last stage that trains a network: refine where the run refines, else adapt."""
    return "refine" if ctx.active("ssl") else "adapt"


def final_stage(ctx: StageContext) -> str:
    """The stage whose network is the run's result: as the evaluation chose it without labels
    (``aa_core.final_model``), else, before the evaluation has run, the last one trained."""
    if ctx.folder.metrics.is_file():
        chosen = json.loads(ctx.folder.metrics.read_text()).get("final", {}).get("model")
        if chosen in MODELS:
            return chosen
    return last_trained(ctx)


def network(ctx: StageContext, stage: str) -> torch.nn.Module:
    """``stage``'s network, untrained: the classifier, then each algorithm's ``build_network`` up to ``stage``."""
    net = ctx.new_classifier(pretrained=False, for_training=False)
    for kind, built_by in (("uda", "adapt"), ("ssl", "refine")):
        if TRAINED.index(stage) >= TRAINED.index(built_by) and ctx.active(kind):
            cls, options = ctx.implementation(kind)
            net = cls.build_network(net, options)
    return net


def trained_model(ctx: StageContext, stage: str) -> torch.nn.Module:
    """``stage``'s network with the weights it saved (``<stage>.safetensors``); ``zero_shot``: the
    VLM's tower with the zero-shot classifier as its head (``zero_shot_head.safetensors``); ``init``:
    the user's classifier (``model.init``) as it came."""
    if stage == "zero_shot":
        from aa_core.models.vlm_classifier import vlm_classifier

        return vlm_classifier(ctx.folder.zero_shot_head, *ctx.implementation("vlm"), len(ctx.categories))
    with torch.random.fork_rng(devices=[]):
        if stage == "init":  # the user's checkpoint itself, as it came
            return ctx.new_classifier(for_training=False)
        net = network(ctx, stage)
    return load_weights(net, ctx.folder.weights(stage))
