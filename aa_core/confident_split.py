"""The confident / unconfident split of the intra-domain stage.

For each class :math:`k`, take the target images predicted as :math:`k`,
:math:`\\hat y_i = \\arg\\max_c p_{ic} = k`, rank them by confidence :math:`\\max_c p_{ic}` and keep the
top :math:`\\lceil r\\,n_k \\rceil` as labelled by :math:`\\hat y`. Choosing per class keeps every
predicted class represented even when confidences differ across classes. The rest is unlabelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Split:
    confident: torch.Tensor  # indices into the target set
    pseudo_labels: torch.Tensor  # one per confident index
    unconfident: torch.Tensor


class ConfidentSplit:
    def __init__(self, fraction: float):
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self.fraction = fraction

    def __call__(self, probabilities: torch.Tensor) -> Split:
        confidence, predicted = probabilities.max(dim=1)
        chosen = []
        for k in predicted.unique().tolist():
            members = (predicted == k).nonzero().flatten()
            keep = math.ceil(self.fraction * len(members))
            order = confidence[members].argsort(descending=True, stable=True)
            chosen.append(members[order[:keep]])
        confident = torch.cat(chosen).sort().values
        mask = torch.ones(len(probabilities), dtype=torch.bool)
        mask[confident] = False
        return Split(confident, predicted[confident], mask.nonzero().flatten())
