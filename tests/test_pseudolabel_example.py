"""examples/aa-pseudolabel, the SSL example of docs/writing-a-plugin.md: its loss by hand, its step
through ``sgd_training``, and a real run with it installed as a distribution."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from conftest import EXAMPLES, aa, read_json

sys.path.insert(0, str(EXAMPLES / "aa-pseudolabel"))
from aa_pseudolabel.pseudolabel import PseudoLabel, pseudo_label_loss  # noqa: E402

from aa_core import api  # noqa: E402
from aa_core.config import ModelConfig  # noqa: E402
from aa_core.models.classifier import build_classifier  # noqa: E402


def test_the_unlabelled_term_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss, mask = pseudo_label_loss(logits, threshold=0.8)
    p = math.exp(2) / (math.exp(2) + 1)  # 0.8808: above tau; the second row's 0.5 is not
    assert mask.tolist() == [1.0, 0.0]
    assert loss.item() == pytest.approx(-math.log(p) / 2, abs=1e-6)
    loss.backward()  # the argmax target is no gradient's way: (p - onehot) / B on the kept row, nothing on the other
    assert torch.allclose(logits.grad, torch.tensor([[(p - 1) / 2, (1 - p) / 2], [0.0, 0.0]]), atol=1e-6)


def test_a_step_is_the_labelled_term_plus_the_weighted_unlabelled_one_and_updates_the_classifier():
    from accelerate import Accelerator

    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(), 3, 1)
    context = api.TrainingContext(Accelerator(cpu=True), 3, total_steps=4, batch_size=4, pretrained_backbone=False, seed=0)
    options = PseudoLabel.Options(weight=0.5, threshold=1e-6)  # tau ~0: every unlabelled prediction counts
    algorithm = PseudoLabel(options, classifier, context)
    x_l, y_l, x_u = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 8, 8)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    with torch.no_grad():
        logits = algorithm.classifier.train()(torch.cat([x_l, x_u]))  # the step's own batch-norm statistics
    classifier.load_state_dict(before)
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[:4], y_l) + 0.5 * ce(logits[4:], logits[4:].argmax(1))
    logs = algorithm.train_step(api.SSLBatch((x_l,), y_l, (x_u,)), 0)
    assert logs["loss"] == pytest.approx(expected.item(), rel=1e-5) and logs["mask"] == 1.0
    moved = [k for k, v in classifier.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in moved) and any(k.startswith("head.") for k in moved)


def test_the_example_installs_and_refines(tmp_path, tiny_config, small_target):
    listed = aa("plugins", fakes=["example:aa-pseudolabel"], check=0).stdout
    assert "aa-pseudolabel 0.1.0  [loaded]  (third-party)" in listed
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--ssl", "pseudolabel",
       "--set", "refine.keep=refine", fakes=["example:aa-pseudolabel"], check=0)  # fmt: skip
    metrics = read_json(out / "metrics.json")
    assert metrics["final"]["model"] == "refine" and 0 <= metrics["target_accuracy"]["refine"] <= 1
    logged = [line for line in (out / "train_log.jsonl").read_text().splitlines() if '"stage": "refine"' in line]
    assert logged and '"mask"' in logged[0]
