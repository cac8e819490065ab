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
  The :math:`N \\times N` similarities are never held: with :math:`x_{ij} = s_{ij}/0.05`,
  :math:`H(q_i) = \\log \\sum_j e^{x_{ij}} - \\sum_j q_{ij} x_{ij}`, accumulated over blocks of
  columns with a running maximum (an exact streaming log-sum-exp), a block of rows at a time.

* ``ensv``: ensemble validation (Hu et al. 2024, EnsV): the candidates' mean prediction is the
  pseudo-target, :math:`\\hat y_i = \\arg\\max_k \\sum_m p^m_{ik}`, and a candidate scores its
  agreement with it, :math:`\\frac1N \\sum_i \\mathbb{1}[\\arg\\max_k p^m_{ik} = \\hat y_i]`. It ranks a set
  of candidates, not one model: the checkpoints of a training (``EnsembleSelector``), the models of
  a run (``metrics.json``'s ``label_free``), the runs of a sweep (``aa compare --select ensv``).
  Each candidate is kept as its argmax (N integers) and the probabilities as one running sum.

``last`` (the default) keeps the last step's model and computes nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import torch

from aa_core.training.weights import load_weights, save_weights

Criterion = Literal["last", "entropy", "infomax", "snd", "ensv"]


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
        return soft_neighbourhood_density(p, temperature)
    raise ValueError(f"unknown criterion {criterion!r} for one model")


def soft_neighbourhood_density(p: torch.Tensor, temperature: float = 0.05, block: int = 2048) -> float:
    """``snd`` above, in ``block x block`` pieces: memory grows with ``block``, not with N."""
    z = torch.nn.functional.normalize(p, dim=1)
    n, total = len(z), 0.0
    for r in range(0, n, block):
        rows = z[r : r + block]
        peak = torch.full((len(rows),), float("-inf"))  # running max of x_ij over the columns seen
        mass = torch.zeros(len(rows))  # sum_j exp(x_ij - peak)
        moment = torch.zeros(len(rows))  # sum_j exp(x_ij - peak) * x_ij
        for c in range(0, n, block):
            x = rows @ z[c : c + block].T / temperature
            if c < r + len(rows) and r < c + x.shape[1]:  # the block holds some of the diagonal: j != i
                i = torch.arange(max(r, c), min(r + len(rows), c + x.shape[1]))
                x[i - r, i - c] = float("-inf")
            new_peak = torch.maximum(peak, x.max(dim=1).values)
            shrink = torch.exp(peak - new_peak).nan_to_num(0.0)  # 0 where the old peak was -inf
            e = torch.exp(x - new_peak[:, None]).nan_to_num(0.0)  # 0 for j == i, also when a row saw nothing else yet
            mass = mass * shrink + e.sum(dim=1)
            moment = moment * shrink + (e * x.nan_to_num(neginf=0.0)).sum(dim=1)
            peak = new_peak
        total += (peak + mass.log() - moment / mass).sum().item()
    return total / n


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

    def state_dict(self) -> dict:
        """Everything the selector holds (a training checkpoint saves it)."""
        return {"values": self.values, "best_step": self.best_step, "best_state": self._best_state}

    def load_state_dict(self, state: dict) -> None:
        self.values, self.best_step, self._best_state = state["values"], state["best_step"], state["best_state"]

    def record(self) -> dict:
        return {"criterion": self.criterion, "chosen_step": self.best_step, "values": self.values}


def ensemble_agreement(predicted: list[torch.Tensor], total: torch.Tensor) -> list[float]:
    """``ensv`` above: each candidate's argmax (``predicted``, N each) against the argmax of the
    candidates' summed probabilities ``total`` (N, K)."""
    pseudo = total.argmax(dim=1)
    return [(labels.to(pseudo.dtype) == pseudo).float().mean().item() for labels in predicted]


def pairwise_agreement(predicted: list[torch.Tensor]) -> list[float]:
    """``agreement``: each candidate's mean agreement with every other candidate's argmax,
    :math:`a_m = \\frac{1}{M-1} \\sum_{n \\ne m} \\frac{1}{N} \\sum_i [\\hat y^m_i = \\hat y^n_i]`
    (1 for a lone candidate: no other to disagree with). Unlike ``ensv`` a candidate is not
    compared with an ensemble it is part of."""
    out = []
    for m, mine in enumerate(predicted):
        others = [(mine == theirs).float().mean().item() for n, theirs in enumerate(predicted) if n != m]
        out.append(sum(others) / len(others) if others else 1.0)
    return out


class EnsembleSelector:
    """``ensv`` over the checkpoints of one training: every candidate offered is kept (its argmax
    here, its weights in ``folder``, so that memory does not grow with the candidates), and the
    scores are those against the ensemble of all of them; the first of equal scores is chosen.

    Every process calls it; the main process writes and removes the weight files.
    """

    criterion = "ensv"

    def __init__(self, folder: Path, accelerator):
        self.folder, self.accelerator = folder, accelerator
        self.steps: list[int] = []
        self.predicted: list[torch.Tensor] = []
        self.total: torch.Tensor | None = None

    def candidate(self, step: int) -> Path:
        return self.folder / f"candidate-{step:08d}.safetensors"

    def offer(self, step: int, probabilities: torch.Tensor, model: torch.nn.Module) -> None:
        p = probabilities.float().cpu()
        self.total = p.clone() if self.total is None else self.total + p
        self.steps.append(step)
        self.predicted.append(p.argmax(dim=1).to(torch.int32))
        if self.accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
        save_weights(model, self.candidate(step), self.accelerator)

    @property
    def values(self) -> dict[int, float]:
        if self.total is None:
            return {}
        return {step: round(v, 6) for step, v in zip(self.steps, ensemble_agreement(self.predicted, self.total))}

    @property
    def best_step(self) -> int | None:
        values = self.values
        return max(values, key=lambda step: (values[step], -step)) if values else None

    def restore(self, model: torch.nn.Module) -> None:
        """Load the chosen candidate's weights into ``model``; then the candidates' files go."""
        if self.best_step is not None:
            load_weights(model, self.candidate(self.best_step))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            for path in self.folder.glob("candidate-*.safetensors"):  # only what offer writes
                path.unlink()
            try:
                self.folder.rmdir()
            except OSError:  # still holding something aa did not write here
                pass

    def state_dict(self) -> dict:
        return {"steps": self.steps, "predicted": self.predicted, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.predicted, self.total = list(state["steps"]), list(state["predicted"]), state["total"]

    def record(self) -> dict:
        return {"criterion": self.criterion, "chosen_step": self.best_step, "values": self.values}
