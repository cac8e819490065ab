"""DANN: gradient reversal, the adversarial loss against hand-computed values, the schedules."""

import math

import pytest
import torch
from torch import nn

from aa_core.training.schedules import inverse_decay, sigmoid_ramp
from aa_uda.dann import DomainAdversarialLoss
from aa_uda.domain_discriminator import DomainDiscriminator
from aa_uda.gradient_reversal import reverse_gradient


def test_gradient_reversal_is_identity_forward_and_negated_scaled_backward():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


class Linear(nn.Linear):
    """A linear discriminator: no batch norm, so the domains' sizes change nothing."""

    def forward(self, x, domain_sizes=None):
        return super().forward(x)


def test_the_discriminator_normalises_each_domain_apart_in_one_pass():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(4, hidden=8)
    f_s, f_t = torch.randn(5, 4), torch.randn(3, 4) + 2
    together = discriminator(torch.cat([f_s, f_t]), (5, 3))
    apart = torch.cat([discriminator(f_s), discriminator(f_t)])
    assert torch.allclose(together, apart, atol=1e-6)
    assert not torch.allclose(discriminator(torch.cat([f_s, f_t])), apart, atol=1e-3)  # one batch norm over both differs


def test_domain_adversarial_loss_matches_hand_computation():
    # D(f) = f . [1, -1]: source features score 1 and 2, target features score 0 and -1
    discriminator = Linear(2, 1, bias=False)
    discriminator.weight.data = torch.tensor([[1.0, -1.0]])
    f_s = torch.tensor([[1.0, 0.0], [2.0, 0.0]], requires_grad=True)
    f_t = torch.tensor([[0.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = DomainAdversarialLoss(discriminator)(f_s, f_t, coefficient=1.0)

    def bce(logit, label):
        p = 1 / (1 + math.exp(-logit))
        return -(label * math.log(p) + (1 - label) * math.log(1 - p))

    expected = 0.5 * ((bce(1, 1) + bce(2, 1)) / 2 + (bce(0, 0) + bce(-1, 0)) / 2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    loss.backward()
    # dL/dlogit = 0.5 * (sigmoid(z) - label) / 2 per example; the features get the reversed gradient
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    expected_grad_s0 = -0.25 * (sig(1) - 1) * torch.tensor([1.0, -1.0])
    assert torch.allclose(f_s.grad[0], expected_grad_s0, atol=1e-6)
    assert discriminator.weight.grad is not None  # the discriminator itself descends


def test_coefficient_follows_the_paper_schedule():
    assert sigmoid_ramp(0.0) == 0.0
    assert sigmoid_ramp(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert sigmoid_ramp(1.0) == pytest.approx(0.99990920)
    assert inverse_decay(0.0) == 1.0
    assert inverse_decay(1.0) == pytest.approx(11 ** -0.75)


def test_dann_step_updates_classifier_and_discriminator():
    from accelerate import Accelerator

    from aa_core.config import ModelConfig
    from aa_core.contracts import TrainingContext, UDABatch
    from aa_core.models.classifier import build_classifier
    from aa_uda.dann import DANN

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), num_classes=3, channels=1)
    context = TrainingContext(Accelerator(cpu=True), 3, total_steps=10, batch_size=4, pretrained_backbone=False, seed=0)
    dann = DANN(DANN.Options(), classifier, context)
    before = [p.detach().clone() for p in dann.adversarial.parameters()]
    head = classifier.head.weight.detach().clone()
    logs = dann.train_step(UDABatch(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8)), step=5)
    assert set(logs) == {"loss", "cls", "adv", "lambda"}
    assert logs["lambda"] == pytest.approx(sigmoid_ramp(0.5))
    assert logs["loss"] == pytest.approx(logs["cls"] + logs["adv"], rel=1e-5)
    assert not torch.equal(classifier.head.weight, head)
    assert any(not torch.equal(a, b) for a, b in zip(before, dann.adversarial.parameters()))
