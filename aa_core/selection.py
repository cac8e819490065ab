"""Choosing the adapted model without target labels: unsupervised criteria on target predictions.

Every ``train.select_every`` steps the UDA algorithm's predictor labels the whole target (plain
views); a criterion scores the probabilities :math:`p_i` (rows, :math:`N \\times K`) and the best
checkpoint so far is kept. Higher is better for every criterion:

* ``entropy``: :math:`-\\frac1N \\sum_i H(p_i)`, confident predictions;
* ``infomax``: :math:`H(\\bar p) - \\frac1N \\sum_i H(p_i)`, confident and spread over the
  classes (information maximisation, as SHOT's objective);
* ``snd``: soft neighbourhood density (Saito et al. 2021): with :math:`z_i = p_i / \\lVert p_i \\rVert`,
  :math:`s_{ij} = z_i^\\top z_j` for :math:`j \\ne i`, :math:`q_i = \\mathrm{softmax}_j(s_{ij}/0.05)`,
  the score is :math:`\\frac1N \\sum_i H(q_i)`: predictions that form dense neighbourhoods.

``last`` (the default) keeps the last step's model and computes nothing.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch

Criterion = Literal["last", "entropy", "infomax", "snd"]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(dim=-1)


def score(probabilities: torch.Tensor, criterion: Criterion, temperature: float = 0.05) -> float:
    """The criterion's value for target probabilities (N, K); higher is better."""
    p = probabilities.float()
    if criterion == "entropy":
        return -_entropy(p).mean().item()
    if criterion == "infomax":
        return (_entropy(p.mean(dim=0)) - _entropy(p).mean()).item()
    if criterion == "snd":
        z = torch.nn.functional.normalize(p, dim=1)
        similarity = z @ z.T
        similarity.fill_diagonal_(float("-inf"))
        return _entropy((similarity / temperature).softmax(dim=1)).mean().item()
    raise ValueError(f"unknown criterion {criterion!r}")


class CheckpointSelector:
    """Keeps the weights of the best-scoring checkpoint seen; ``values`` maps each step to its score."""

    def __init__(self, criterion: Criterion):
        self.criterion = criterion
        self.values: dict[int, float] = {}
        self.best_step: int | None = None
        self._best_state: dict | None = None

    def offer(self, step: int, probabilities: torch.Tensor, model: torch.nn.Module) -> None:
        value = score(probabilities, self.criterion)
        self.values[step] = round(value, 6)
        if self.best_step is None or value > self.values[self.best_step]:
            self.best_step, self._best_state = step, copy.deepcopy(model.state_dict())

    def restore(self, model: torch.nn.Module) -> None:
        """Load the best checkpoint's weights into ``model``."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)

    def record(self) -> dict:
        return {"criterion": self.criterion, "chosen_step": self.best_step, "values": self.values}
