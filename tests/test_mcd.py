"""MCD: the discrepancy by hand, and which parameters each of its three updates changes."""

import pytest
import torch

from aa_core.api import TrainingContext, UDABatch
from aa_core.config import ModelConfig
from aa_core.models.classifier import build_classifier
from aa_uda.mcd import MCD, SumOfClassifiers, discrepancy


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


def make_mcd():
    from accelerate import Accelerator

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), num_classes=3, channels=1)
    context = TrainingContext(Accelerator(cpu=True), 3, total_steps=10, batch_size=4, pretrained_backbone=False, seed=0)
    mcd = MCD(MCD.Options(), MCD.build_network(classifier, MCD.Options()), context)  # as the core builds it
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
