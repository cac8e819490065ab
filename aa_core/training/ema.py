"""An exponential moving average of a network's weights, as FixMatch and MixMatch predict with.

.. math:: \\theta'_k = d_k\\,\\theta'_{k-1} + (1 - d_k)\\,\\theta_k

for every parameter after each update :math:`k`; buffers (BatchNorm's running statistics) are
copied, not averaged, as in FixMatch's and USB's reference code. The reference keeps
:math:`d_k = d` (0.999): the average weighs the start by :math:`d^k` and needs a few thousand
updates to forget it; here the start is the adapted model, a good one to stay near. With
``warmup`` (timm's ModelEmaV3 rule) :math:`d_k = \\min(d, 1 - (1 + k)^{-2/3})`: the average
follows the weights closely early on, about 0.984 after 500 updates.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """``EMA(model, decay)``; ``ema.update(model)`` after each step; predict with ``ema.module``."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0 <= decay < 1:
            raise ValueError("decay must be in [0, 1)")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._parameters = {name for name, _ in self.module.named_parameters()}

    def current_decay(self) -> float:
        """:math:`d_k` for the next update."""
        return min(self.decay, 1 - (1 + self.updates) ** (-2 / 3)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        average = self.module.state_dict()
        for name, value in model.state_dict().items():
            if name in self._parameters:
                average[name].lerp_(value.detach(), 1 - decay)
            else:
                average[name].copy_(value)
        self.updates += 1
