"""Choosing the adapted checkpoint without labels: the criteria by hand, and the kept weights."""

import math

import pytest
import torch
from conftest import aa, read_json

from aa_core.selection import (
    CheckpointSelector,
    EnsembleSelector,
    ensemble_agreement,
    pairwise_agreement,
    score,
    soft_neighbourhood_density,
)

CONFIDENT = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
COLLAPSED = torch.tensor([[0.9, 0.1], [0.9, 0.1]])


def h(*p):
    return -sum(v * math.log(v) for v in p)


def test_entropy_and_infomax_by_hand():
    assert score(CONFIDENT, "entropy") == pytest.approx(-h(0.9, 0.1))
    assert score(CONFIDENT, "infomax") == pytest.approx(h(0.5, 0.5) - h(0.9, 0.1))
    assert score(COLLAPSED, "infomax") == pytest.approx(h(0.9, 0.1) - h(0.9, 0.1))  # collapse scores 0
    assert score(COLLAPSED, "entropy") == score(CONFIDENT, "entropy")  # entropy alone cannot tell


def test_soft_neighbourhood_density_by_hand():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # rows 0 and 1 are each other's only similar neighbour; row 2 has two equally dissimilar ones
    q_far = [math.exp(0 / 0.05) / (math.exp(1 / 0.05) + 1), math.exp(1 / 0.05) / (math.exp(1 / 0.05) + 1)]
    expected = (h(*q_far) * 2 + h(0.5, 0.5)) / 3
    assert score(p, "snd") == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("block", [1, 2, 7, 53])
def test_soft_neighbourhood_density_in_blocks_equals_the_whole_matrix(block):
    """Rows and columns streamed in blocks (an exact running log-sum-exp) give the N x N formula's value."""
    torch.manual_seed(0)
    p = torch.randn(53, 5).mul(3).softmax(dim=1)
    z = torch.nn.functional.normalize(p, dim=1)
    s = z @ z.T
    s.fill_diagonal_(float("-inf"))
    q = (s / 0.05).softmax(dim=1)
    whole = -(q * q.clamp_min(1e-30).log()).sum(dim=1).mean().item()
    assert soft_neighbourhood_density(p, block=block) == pytest.approx(whole, rel=1e-5)


def test_the_selector_keeps_and_restores_the_best_checkpoint():
    model = torch.nn.Linear(1, 1)
    selector = CheckpointSelector("infomax")
    model.weight.data.fill_(1.0)
    selector.offer(100, CONFIDENT, model)
    model.weight.data.fill_(2.0)
    selector.offer(200, COLLAPSED, model)
    selector.restore(model)
    assert model.weight.item() == 1.0
    assert selector.record() == {"criterion": "infomax", "chosen_step": 100, "values": {100: pytest.approx(0.368064, abs=1e-6), 200: 0.0}}


def test_a_run_records_the_chosen_step_and_every_value(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--ssl", "none",
       "--set", "train.select=snd", "--set", "train.select_every=4", check=0)  # fmt: skip
    selection = read_json(out / "metrics.json")["model_selection"]
    assert selection["criterion"] == "snd" and set(selection["values"]) == {"4", "8", "10"}
    assert selection["values"][str(selection["chosen_step"])] == max(selection["values"].values())


def test_pairwise_agreement_by_hand():
    # three candidates on four images: a and b agree on 3 of 4, a and c on 1, b and c on 2
    a, b, c = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 0])
    assert pairwise_agreement([a, b, c]) == [pytest.approx((3 / 4 + 1 / 4) / 2), pytest.approx((3 / 4 + 2 / 4) / 2),
                                             pytest.approx((1 / 4 + 2 / 4) / 2)]  # fmt: skip
    assert pairwise_agreement([a]) == [1.0]


def test_ensemble_agreement_by_hand():
    """EnsV: the summed probabilities' argmax is the pseudo-target; each candidate scores its agreement."""
    a = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])  # predicts 0 0 1
    b = torch.tensor([[0.4, 0.6], [0.45, 0.55], [0.3, 0.7]])  # predicts 1 1 1
    # sums: [1.3, 0.7], [1.05, 0.95], [0.5, 1.5] -> 0 0 1: two votes for b's class on image 1 would say 1
    assert ensemble_agreement([a.argmax(dim=1), b.argmax(dim=1)], a + b) == [1.0, pytest.approx(1 / 3)]
    with pytest.raises(ValueError, match="for one model"):
        score(a, "ensv")


def test_the_ensemble_selector_ranks_every_checkpoint_against_all_of_them_and_keeps_none_on_disk(tmp_path):
    from accelerate import Accelerator

    model = torch.nn.Linear(1, 1)
    folder = tmp_path / "checkpoints" / "adapt-candidates"
    selector = EnsembleSelector(folder, Accelerator(cpu=True))
    offers = {  # step: (weight, probabilities of 4 images over 2 classes)
        10: (1.0, torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])),  # 0 0 1 0
        20: (2.0, torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.1, 0.9]])),  # 0 1 1 1
        30: (3.0, torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.45, 0.55], [0.3, 0.7]])),  # 0 0 1 1
    }
    for step, (weight, p) in offers.items():
        model.weight.data.fill_(weight)
        selector.offer(step, p, model)
        assert selector.candidate(step).is_file()
    # sums: [2.2, 0.8], [1.9, 1.1], [0.95, 2.05], [1.0, 2.0] -> 0 0 1 1: step 30 agrees everywhere
    assert selector.values == {10: 0.75, 20: 0.75, 30: 1.0} and selector.best_step == 30
    state = selector.state_dict()
    torch.save(state, tmp_path / "training.pt")
    resumed = EnsembleSelector(folder, Accelerator(cpu=True))
    resumed.load_state_dict(torch.load(tmp_path / "training.pt", weights_only=True))  # a checkpoint holds plain tensors
    assert resumed.record() == {"criterion": "ensv", "chosen_step": 30, "values": {10: 0.75, 20: 0.75, 30: 1.0}}
    model.weight.data.fill_(0.0)
    resumed.restore(model)
    assert model.weight.item() == 3.0 and not folder.exists() and (tmp_path / "checkpoints").is_dir()
    tied = EnsembleSelector(tmp_path / "tied", Accelerator(cpu=True))
    for step in (5, 6):
        tied.offer(step, offers[30][1], model)
    assert tied.best_step == 5  # the first of equals, as the other selectors


def test_a_run_selects_by_ensv_and_records_it_for_every_model(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out,
       "--set", "train.select=ensv", "--set", "train.select_every=4", check=0)  # fmt: skip
    metrics = read_json(out / "metrics.json")
    selection = metrics["model_selection"]
    assert selection["criterion"] == "ensv" and set(selection["values"]) == {"4", "8", "10"}
    assert all(0 <= v <= 1 for v in selection["values"].values())
    assert selection["values"][str(selection["chosen_step"])] == max(selection["values"].values())
    assert not (out / "checkpoints").exists()  # the candidates' weights went with the checkpoints
    models = ["source_only", "adapt", "refine"]
    assert sorted(metrics["label_free"]) == sorted(models)
    n = metrics["target_images"]  # an agreement is a count of images over n
    assert all(0 <= (v := metrics["label_free"][m]["ensv"]) <= 1 and abs(v * n - round(v * n)) < 1e-3 for m in models)
