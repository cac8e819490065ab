"""The domain discriminator of DANN: Linear(d, h)-BN-ReLU-Linear(h, h)-BN-ReLU-Linear(h, 1).

It outputs one logit per example, positive for "source".
"""

from __future__ import annotations

from torch import nn


class DomainDiscriminator(nn.Sequential):
    def __init__(self, in_features: int, hidden: int = 1024):
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )
