"""Choosing the adapted checkpoint without labels: the criteria by hand, and the kept weights."""

import math

import pytest
import torch
from conftest import aa, read_json

from aa_core.selection import CheckpointSelector, score, soft_neighbourhood_density

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
