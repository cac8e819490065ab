"""MixMatch: sharpening, MixUp with lambda', the ramp-up and the losses against hand-computed values."""

import pytest
import torch

from aa_ssl.mixmatch import MixMatch, MixMatchLoss, linear_rampup, mixup, sharpen


def test_sharpen_raises_to_one_over_t_and_renormalises():
    p = torch.tensor([[0.6, 0.3, 0.1]])
    expected = torch.tensor([0.36, 0.09, 0.01]) / 0.46  # T = 0.5: squares
    assert torch.allclose(sharpen(p, 0.5), expected)
    assert torch.allclose(sharpen(p, 1.0), p)


def test_mixup_keeps_the_larger_share_for_the_example_itself():
    x = torch.tensor([[0.0], [10.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    order = torch.tensor([1, 0])
    for lam in (0.2, 0.8):  # lambda' = max(lambda, 1 - lambda) = 0.8 either way
        mixed_x, mixed_p = mixup(x, p, lam, order)
        assert torch.allclose(mixed_x, torch.tensor([[2.0], [8.0]]))
        assert torch.allclose(mixed_p, torch.tensor([[0.8, 0.2], [0.2, 0.8]]))


def test_lambda_u_ramps_up_linearly_over_the_first_fraction_of_training():
    assert linear_rampup(0, 1000, 0.1) == 0.0
    assert linear_rampup(50, 1000, 0.1) == pytest.approx(0.5)
    assert linear_rampup(100, 1000, 0.1) == 1.0
    assert linear_rampup(900, 1000, 0.1) == 1.0
    assert linear_rampup(0, 1000, 0.0) == 1.0


def test_losses_are_soft_cross_entropy_and_squared_error_over_classes():
    logits_x = torch.log(torch.tensor([[0.5, 0.5]]))
    targets_x = torch.tensor([[0.8, 0.2]])
    logits_u = torch.log(torch.tensor([[0.9, 0.1]]))
    targets_u = torch.tensor([[0.5, 0.5]])
    l_x, l_u = MixMatchLoss()(logits_x, targets_x, logits_u, targets_u)
    assert l_x.item() == pytest.approx(-(0.8 * torch.log(torch.tensor(0.5)) + 0.2 * torch.log(torch.tensor(0.5))).item())
    assert l_u.item() == pytest.approx((0.4**2 + 0.4**2) / 2)  # mean over the C = 2 classes


def test_mixmatch_step_guesses_over_k_views_and_predicts_with_its_ema():
    from accelerate import Accelerator

    from aa_core.api import TrainingContext
    from aa_core.config import ModelConfig
    from aa_core.models.classifier import build_classifier

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), num_classes=3, channels=1)
    context = TrainingContext(Accelerator(cpu=True), 3, total_steps=100, batch_size=4, pretrained_backbone=False, seed=0)
    mixmatch = MixMatch(MixMatch.Options(k=3), classifier, context)
    feed = MixMatch.feed(MixMatch.Options(k=3), context)
    assert feed.unlabelled_views == ("weak",) * 3 and feed.unlabelled_batch_size == 4 and feed.unlabelled == "unconfident"
    views = tuple(torch.randn(4, 1, 8, 8) for _ in range(3))
    q = mixmatch.guess(views)
    assert q.shape == (4, 3) and torch.allclose(q.sum(dim=1), torch.ones(4))
    batch_args = dict(x_l=(torch.randn(4, 1, 8, 8),), y_l=torch.tensor([0, 1, 2, 0]), x_u=views)
    from aa_core.api import SSLBatch

    before = [p.clone() for p in classifier.parameters()]
    logs = mixmatch.train_step(SSLBatch(**batch_args), step=1)
    assert logs["lambda_u"] == pytest.approx(75 * linear_rampup(1, 100, 1 / 64))
    assert logs["loss"] == pytest.approx(logs["labelled"] + logs["lambda_u"] * logs["unlabelled"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, mixmatch.classifier.parameters()))
    assert type(mixmatch.predictor()) is type(classifier) and mixmatch.predictor() is not classifier
