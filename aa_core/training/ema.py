"""An exponential moving average of a network's weights, as FixMatch and MixMatch predict with.

.. math:: \\theta'_k = d\\,\\theta'_{k-1} + (1 - d)\\,\\theta_k

for every parameter after each update :math:`k`, with decay :math:`d`; buffers (BatchNorm's
running statistics) are copied, not averaged, as in FixMatch's and USB's reference code. The
average weighs the start by :math:`d^k`: at :math:`d = 0.999` it needs a few thousand updates to
forget the initial weights, which here are the adapted model's, a good start.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """``EMA(model, decay)``; ``ema.update(model)`` after each step; predict with ``ema.module``."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0 <= decay < 1:
            raise ValueError("decay must be in [0, 1)")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._parameters = {name for name, _ in self.module.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        average = self.module.state_dict()
        for name, value in model.state_dict().items():
            if name in self._parameters:
                average[name].lerp_(value.detach(), 1 - self.decay)
            else:
                average[name].copy_(value)
