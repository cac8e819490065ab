"""SymNets: each loss against hand-computed values, and which parameters each loss reaches."""

import math

import pytest
import torch

from aa_core.api import TrainingContext, UDABatch
from aa_core.config import ModelConfig
from aa_core.models.classifier import build_classifier
from aa_uda.symnets import SymmetricLosses, SymNets, log_mass

# K = 2: outputs [C_s(1), C_s(2), C_t(1), C_t(2)]
O_S = torch.tensor([[2.0, 0.0, 1.0, 0.0]])
O_T = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
Y = torch.tensor([0])


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_log_mass_is_the_log_of_the_summed_softmax_of_a_half():
    p = softmax([2.0, 0.0, 1.0, 0.0])
    assert log_mass(O_S, slice(0, 2)).item() == pytest.approx(math.log(p[0] + p[1]))


def test_the_classifier_loss_is_both_task_losses_and_the_domain_discriminator():
    ce = lambda logits, y: -math.log(softmax(logits)[y])  # noqa: E731
    p_s, p_t = softmax([2.0, 0.0, 1.0, 0.0]), softmax([0.0, 0.0, 1.0, 1.0])
    expected = ce([2.0, 0.0], 0) + ce([1.0, 0.0], 0) - math.log(p_s[0] + p_s[1]) - math.log(p_t[2] + p_t[3])
    assert SymmetricLosses(2).classifier(O_S, O_T, Y).item() == pytest.approx(expected)


def test_the_feature_losses_confuse_categories_and_domains_and_lower_entropy():
    losses = SymmetricLosses(2)
    p_s, p_t = softmax([2.0, 0.0, 1.0, 0.0]), softmax([0.0, 0.0, 1.0, 1.0])
    # 2K-way cross-entropy of the logits, to class 0 and to class 0 + K: never of probabilities
    assert losses.category_confusion(O_S, Y).item() == pytest.approx(-0.5 * math.log(p_s[0]) - 0.5 * math.log(p_s[2]))
    assert losses.domain_confusion(O_T).item() == pytest.approx(-0.5 * math.log(p_t[2] + p_t[3]) - 0.5 * math.log(p_t[0] + p_t[1]))
    q = [p_t[0] + p_t[2], p_t[1] + p_t[3]]
    assert losses.entropy(O_T).item() == pytest.approx(-sum(v * math.log(v) for v in q))


def make_symnets():
    from accelerate import Accelerator

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), num_classes=3, channels=1)
    context = TrainingContext(Accelerator(cpu=True), 3, total_steps=10, batch_size=4, pretrained_backbone=False, seed=0)
    return SymNets(SymNets.Options(), SymNets.build_network(classifier, SymNets.Options()), context), classifier


def test_each_loss_reaches_only_its_own_parameters():
    symnets, classifier = make_symnets()
    x = torch.randn(8, 1, 8, 8)
    f = symnets.g(x)
    o = symnets.fc(f.detach())
    fc = symnets.fc
    o_g = torch.nn.functional.linear(f, fc.weight.detach(), fc.bias.detach())
    extractor = [*classifier.backbone.parameters(), *classifier.bottleneck.parameters()]
    loss_c = symnets.losses.classifier(o[:4], o[4:], torch.tensor([0, 1, 2, 0]))
    grads = torch.autograd.grad(loss_c, [*extractor, fc.weight], allow_unused=True)
    assert all(g is None for g in grads[:-1]) and grads[-1].abs().sum() > 0
    loss_g = symnets.losses.category_confusion(o_g[:4], torch.tensor([0, 1, 2, 0])) + symnets.losses.entropy(o_g[4:])
    grads = torch.autograd.grad(loss_g, [*extractor, fc.weight], allow_unused=True)
    assert grads[-1] is None and any(g is not None and g.abs().sum() > 0 for g in grads[:-1])


def test_a_step_trains_and_the_predictor_reads_the_target_half():
    symnets, classifier = make_symnets()
    batch = UDABatch(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8))
    before = classifier.head.fc.weight.clone()
    logs = symnets.train_step(batch, step=5)
    assert set(logs) == {"classifier", "features", "domain_confusion", "entropy", "lambda"}
    assert not torch.equal(before, classifier.head.fc.weight)
    predictor = symnets.predictor().eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(predictor(x), classifier.head.fc(classifier.features(x))[:, 3:])
