"""Schedules as functions of training progress ``p = step / total_steps`` in [0, 1]."""

from __future__ import annotations

import math


def progress(step: int, total: int) -> float:
    return min(step / max(total, 1), 1.0)


def sigmoid_ramp(p: float, gamma: float = 10.0) -> float:
    """:math:`\\lambda(p) = 2 / (1 + e^{-\\gamma p}) - 1`: 0 at the start, close to 1 at the end (Ganin & Lempitsky)."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


def inverse_decay(p: float, gamma: float = 10.0, power: float = 0.75) -> float:
    """Learning-rate factor :math:`(1 + \\gamma p)^{-\\text{power}}` (DANN, SymNets)."""
    return (1.0 + gamma * p) ** (-power)


def cosine_decay(p: float, fraction: float = 7 / 16) -> float:
    """Learning-rate factor :math:`\\cos(\\pi \\cdot \\text{fraction} \\cdot p)`; FixMatch uses 7/16."""
    return math.cos(math.pi * fraction * p)


def warmup_cosine(p: float, warmup: float = 0.25, start: float = 0.01) -> float:
    """Learning-rate factor: linear from ``start`` to 1 over the first ``warmup`` of training, then
    :math:`\\tfrac12 (1 + \\cos(\\pi (p - w) / (1 - w)))` down to 0 (CDTrans: 10 of 40 epochs)."""
    if p < warmup:
        return start + (1.0 - start) * p / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (p - warmup) / max(1.0 - warmup, 1e-12)))


def lambda_lr(optimizer, total_steps: int, factor):
    """A LambdaLR whose factor is ``factor(p)`` with ``p`` the progress of the step."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(progress(step, total_steps)))
