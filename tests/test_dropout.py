"""aa's dropout: torch's distribution and scaling, its gradient, eval, and TorchScript."""

import pytest
import torch

from aa_core.api import Dropout


def test_training_keeps_one_minus_p_of_the_elements_scaled_up_and_passes_the_gradient_through_them():
    torch.manual_seed(0)
    x = torch.full((400, 250), 2.0, requires_grad=True)
    y = Dropout(0.3)(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.01)
    assert torch.allclose(y[kept], torch.tensor(2.0 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.7)
    assert not x.grad[~kept].any()


def test_masks_are_fresh_each_call_and_follow_the_seed():
    x = torch.ones(64, 32)
    dropout = Dropout(0.5)
    torch.manual_seed(1)
    first, second = dropout(x), dropout(x)
    torch.manual_seed(1)
    assert not torch.equal(first, second) and torch.equal(dropout(x), first)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_the_edge_probabilities_are_torchs(p):
    x = torch.randn(8, 4)
    assert torch.equal(Dropout(p)(x), torch.nn.Dropout(p)(x))


def test_eval_is_the_identity_and_it_scripts_to_the_same_masks():
    x = torch.randn(16, 8)
    dropout = Dropout(0.5)
    scripted = torch.jit.script(dropout)
    torch.manual_seed(2)
    eager = dropout(x)
    torch.manual_seed(2)
    assert torch.equal(scripted(x), eager)
    dropout.eval()
    scripted.eval()
    assert torch.equal(dropout(x), x) and torch.equal(scripted(x), x)
