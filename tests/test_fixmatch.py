"""FixMatch: the unlabelled loss against hand-computed values, and one training step."""

import math

import pytest
import torch

from aa_ssl.fixmatch import FixMatchLoss


def test_unlabelled_loss_is_masked_cross_entropy_averaged_over_all_unlabelled():
    # image 0: weak view confident (p=0.98 for class 1) -> counts; image 1: p=0.6 -> masked out
    logits_weak = torch.log(torch.tensor([[0.01, 0.98, 0.01], [0.6, 0.3, 0.1]]))
    logits_strong = torch.log(torch.tensor([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]))
    loss, mask = FixMatchLoss(threshold=0.95)(logits_weak, logits_strong)
    assert mask.tolist() == [1.0, 0.0]
    assert loss.item() == pytest.approx(-math.log(0.7) / 2, rel=1e-6)


def test_no_gradient_flows_through_the_pseudo_label():
    logits_weak = torch.tensor([[5.0, 0.0], [0.0, 5.0]], requires_grad=True)
    logits_strong = torch.zeros(2, 2, requires_grad=True)
    loss, _ = FixMatchLoss(threshold=0.5)(logits_weak, logits_strong)
    loss.backward()
    assert logits_weak.grad is None or torch.count_nonzero(logits_weak.grad) == 0
    assert torch.count_nonzero(logits_strong.grad) > 0


def test_fixmatch_step_and_ema_predictor():
    from accelerate import Accelerator

    from aa_core.config import ModelConfig
    from aa_core.contracts import SSLBatch, TrainingContext
    from aa_core.models.classifier import build_classifier
    from aa_ssl.fixmatch import FixMatch

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), num_classes=3, channels=1)
    context = TrainingContext(Accelerator(cpu=True), 3, total_steps=10, batch_size=2, pretrained_backbone=False, seed=0)
    fixmatch = FixMatch(FixMatch.Options(mu=2), classifier, context)
    assert FixMatch.feed(FixMatch.Options(mu=2), context).unlabelled_batch_size == 4
    batch = SSLBatch(x_l=(torch.randn(2, 1, 8, 8),), y_l=torch.tensor([0, 1]), x_u=(torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)))
    logs = fixmatch.train_step(batch, step=0)
    assert set(logs) == {"loss", "labelled", "unlabelled", "mask"}
    assert logs["loss"] == pytest.approx(logs["labelled"] + logs["unlabelled"], rel=1e-5)
    ema = fixmatch.predictor()
    assert ema is not classifier and type(ema) is type(classifier)


def test_fixmatch_defaults_follow_the_paper_and_deviations_are_options():
    from accelerate import Accelerator

    from aa_core.config import ModelConfig
    from aa_core.contracts import SSLFeed, TrainingContext
    from aa_core.models.classifier import build_classifier
    from aa_ssl.fixmatch import FixMatch

    def make(pretrained, **options):
        context = TrainingContext(Accelerator(cpu=True), 3, total_steps=10, batch_size=2, pretrained_backbone=pretrained, seed=0)
        return FixMatch(FixMatch.Options(**options), build_classifier(ModelConfig(), 3, 1), context)

    def feed(**options):
        return FixMatch.feed(FixMatch.Options(**options), TrainingContext(None, 3, 10, batch_size=2, pretrained_backbone=False, seed=0))

    paper = make(False)
    assert feed() == SSLFeed(2, 14, ("weak",), ("weak", "strong"), "all")
    assert paper.ema.warmup and paper.ema.current_decay() == 0.0  # warm-up: the average starts as a copy
    assert {g["lr"] for g in paper.update.optimizer.param_groups} == {0.03}
    pretrained = make(True)  # the FixMatch-for-UDA rate, backbone at a tenth
    assert sorted({round(g["lr"], 6) for g in pretrained.update.optimizer.param_groups}) == [0.0003, 0.003]
    deviating = make(False, ema_warmup=False, unlabelled="unconfident")
    assert feed(unlabelled="unconfident").unlabelled == "unconfident"
    assert deviating.ema.current_decay() == 0.999  # the reference's constant decay
