"""MCD: the discrepancy by hand, and which parameters each of its three updates changes."""

import pytest
import torch

from aa_core.api import TrainingContext, UDABatch
from aa_core.config import ModelConfig
from aa_core.models.classifier import build_classifier
from aa_uda.mcd import MCD, SumOfClassifiers, discrepancy, entropy


def test_discrepancy_is_the_mean_absolute_difference_of_the_softmaxes():
    a = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0001]]))
    b = torch.log(torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0001]]))
    assert discrepancy(a, b).item() == pytest.approx((0.6 + 0 + 0.6 + 0 + 0 + 0) / 6, abs=1e-4)


def test_the_predictor_sums_both_classifiers_probabilities():
    c1, c2 = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
    c1.weight.data, c2.weight.data = torch.eye(2), -torch.eye(2)
    f = torch.tensor([[1.0, 0.0]])
    p1, p2 = c1(f).softmax(dim=1), c2(f).softmax(dim=1)
    assert torch.allclose(SumOfClassifiers(c1, c2)(f).exp(), (p1 + p2) / 2)


def make_mcd(**options):
    from accelerate import Accelerator

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), num_classes=3, channels=1)
    context = TrainingContext(Accelerator(cpu=True), 3, total_steps=10, batch_size=4, pretrained_backbone=False, seed=0)
    o = MCD.Options(**options)
    mcd = MCD(o, MCD.build_network(classifier, o), context)  # as the core builds it
    batch = UDABatch(torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8))
    return mcd, classifier, batch


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


@pytest.mark.parametrize(
    ("update", "extractor_moves", "classifiers_move"),
    [("fit_source", True, True), ("maximise_discrepancy", False, True), ("minimise_discrepancy", True, False)],
)
def test_each_update_changes_only_its_parameters(update, extractor_moves, classifiers_move):
    mcd, classifier, batch = make_mcd()
    mcd.fit_source(batch)  # gradients everywhere, so a stale one would show
    extractor = torch.nn.ModuleList([classifier.backbone, classifier.bottleneck])
    before_g = [p.clone() for p in extractor.parameters()]
    before_c = [p.clone() for p in classifier.head.parameters()]
    getattr(mcd, update)(batch)
    assert changed(before_g, extractor) == extractor_moves
    assert changed(before_c, classifier.head) == classifiers_move


def test_a_step_logs_and_the_network_is_rebuilt_from_weights():
    from safetensors.torch import load_model, save_model

    mcd, classifier, batch = make_mcd()
    logs = mcd.train_step(batch, step=0)
    assert set(logs) == {"source", "discrepancy_max", "discrepancy_min"}
    trained = mcd.predictor().eval()
    rebuilt = MCD.build_network(build_classifier(ModelConfig(), 3, 1, for_training=False), MCD.Options()).eval()
    save_model(trained, "/tmp/aa-mcd.safetensors")
    load_model(rebuilt, "/tmp/aa-mcd.safetensors")
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(trained(x), rebuilt(x), atol=1e-6) and torch.allclose(trained(x).exp().sum(dim=1), torch.ones(5))


def test_step_c_computes_no_gradient_for_the_classifiers_and_unfreezes_them():
    mcd, classifier, batch = make_mcd()
    mcd.fit_source(batch)
    before = [p.grad.clone() for p in classifier.head.parameters()]
    mcd.minimise_discrepancy(batch)
    assert all(torch.equal(a, p.grad) for a, p in zip(before, classifier.head.parameters()))
    assert all(p.requires_grad for p in classifier.parameters())


def test_step_c_reuses_step_b_target_features_as_if_computed_anew():
    """The extractor does not move in step B, so its target features (and graph) serve step C's first update."""
    results = []
    for reuse in (True, False):
        mcd, classifier, batch = make_mcd()
        classifier.head.eval()  # no dropout: the two ways must agree exactly
        _, f_t = mcd.maximise_discrepancy(batch)
        mcd.minimise_discrepancy(batch, f_t if reuse else None)
        results.append([p.detach().clone() for p in classifier.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*results))


def test_entropy_is_the_mean_prediction_entropy():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    h = lambda *p: -sum(v * torch.log(torch.tensor(v)).item() for v in p)  # noqa: E731
    assert entropy(logits).item() == pytest.approx((h(0.5, 0.5) + h(0.9, 0.1)) / 2, rel=1e-5)


def test_step_a_adds_the_weighted_target_entropy_of_both_classifiers():
    mcd, _, batch = make_mcd(dropout=0.0, entropy_weight=0.25)
    with torch.no_grad():  # the same networks, in the same (training) mode, before the update
        f_s, f_t = mcd.g(batch.x_s), mcd.g(batch.x_t)
        expected = mcd.source_loss(f_s, batch.y_s) + 0.25 * (entropy(mcd.c1(f_t)) + entropy(mcd.c2(f_t)))
    assert mcd.fit_source(batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_trade_off_scales_step_cs_move_of_the_extractor():
    """tllib's SGD setting (no momentum for G): one step C moves G by lr * w * grad d, so w = 10 moves it ten times as far."""
    moves = []
    for w in (1.0, 10.0):
        mcd, classifier, batch = make_mcd(dropout=0.0, optimizer="sgd", lr=0.01, weight_decay=0.0, trade_off=w)
        before = [p.clone() for p in classifier.backbone.parameters()]
        mcd.minimise_discrepancy(batch)
        moves.append(torch.cat([(p - b).flatten() for p, b in zip(classifier.backbone.parameters(), before)]))
    assert moves[0].abs().sum() > 0
    assert torch.allclose(moves[1], 10 * moves[0], rtol=1e-3, atol=1e-6)  # p - before rounds at ~6e-7 for weights near 1


def test_step_b_maximises_the_weighted_discrepancy():
    """Step B's classifier loss is CE - w d: with w = 0 the classifiers only fit the source, and with a large w they
    end further apart on the target than with w = 0 (the sign would bring them closer)."""
    gaps = {}
    for w in (0.0, 50.0):
        mcd, _, batch = make_mcd(dropout=0.0, optimizer="sgd", lr=0.05, trade_off=w)
        for _ in range(3):
            mcd.maximise_discrepancy(batch)
        with torch.no_grad():
            f_t = mcd.g(batch.x_t)
            gaps[w] = discrepancy(mcd.c1(f_t), mcd.c2(f_t)).item()
    assert gaps[50.0] > gaps[0.0]
