"""The confident / unconfident split of the intra-domain stage.

Each target image :math:`i` has a prediction :math:`\\hat y_i = \\arg\\max_c p_{ic}` from the
plain view, and a score: the probability of that class averaged over the plain view and ``V``
weak views, :math:`s_i = \\frac{1}{V+1}\\sum_{v=0}^{V} p^{(v)}_{i\\hat y_i}`. An image whose
prediction changes under a small shift scores low even when its plain view is confident.

For each predicted class :math:`k`, with :math:`n_k` members ranked by score, the strategy keeps

* ``fraction``: the top :math:`\\lceil r\\,n_k \\rceil`;
* ``threshold``: those with :math:`s_i \\ge t`;
* ``topk``: the top :math:`\\min(K, n_k)`;

and never fewer than :math:`\\min(m, n_k)` (``min_per_class``), so every predicted class is
represented even when confidences differ across classes. Images that tie on the score (many
saturate at 1.0) are ranked by a draw seeded with the run's seed, not by their order in the
folder. The kept images are labelled by :math:`\\hat y`; the rest are unlabelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Strategy = Literal["fraction", "threshold", "topk"]


@dataclass
class Split:
    confident: torch.Tensor  # indices into the target set
    pseudo_labels: torch.Tensor  # one per confident index
    unconfident: torch.Tensor
    predicted: torch.Tensor  # per target image: the plain view's class
    score: torch.Tensor  # per target image


class ConfidentSplit:
    def __init__(
        self,
        strategy: Strategy = "fraction",
        fraction: float = 0.5,
        threshold: float = 0.9,
        top_k: int = 100,
        min_per_class: int = 1,
    ):
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        self.strategy, self.fraction, self.threshold, self.top_k, self.min_per_class = strategy, fraction, threshold, top_k, min_per_class

    def keep(self, scores: torch.Tensor) -> int:
        """How many of a class's members, sorted by descending score, are kept."""
        n = len(scores)
        if self.strategy == "fraction":
            chosen = math.ceil(self.fraction * n)
        elif self.strategy == "threshold":
            chosen = int((scores >= self.threshold).sum())
        else:
            chosen = min(self.top_k, n)
        return max(chosen, min(self.min_per_class, n))

    def __call__(self, probabilities: torch.Tensor, views: list[torch.Tensor] | None = None, seed: int = 0) -> Split:
        """``probabilities`` of the plain view (N, C); ``views``: those of weak views, each (N, C);
        ``seed`` draws the order of tied scores."""
        predicted = probabilities.argmax(dim=1)
        stack = torch.stack([probabilities, *(views or [])])
        score = stack.gather(2, predicted.view(1, -1, 1).expand(len(stack), -1, 1)).squeeze(2).mean(dim=0)
        draw = torch.randperm(len(probabilities), generator=torch.Generator().manual_seed(seed))
        chosen = []
        for k in predicted.unique().tolist():
            members = (predicted == k).nonzero().flatten()
            members = members[draw[members].argsort()]  # the stable sort below keeps this order for ties
            order = score[members].argsort(descending=True, stable=True)
            ranked = members[order]
            chosen.append(ranked[: self.keep(score[ranked])])
        confident = torch.cat(chosen).sort().values
        mask = torch.ones(len(probabilities), dtype=torch.bool)
        mask[confident] = False
        return Split(confident, predicted[confident], mask.nonzero().flatten(), predicted, score)
