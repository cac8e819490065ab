"""Entropy minimisation (Grandvalet & Bengio 2005) as a UDA algorithm.

.. math::
    \\mathcal{L} = \\mathrm{CE}(C(F(x_s)), y_s) + w\\,\\frac1B\\sum_{b=1}^{B} H\\big(p(x_t^b)\\big),
    \\qquad H(p) = -\\sum_k p_k \\log p_k

Confident target predictions pull the decision boundaries away from the target's dense regions.
SGD with the core's parameter groups and the inverse-decay schedule (``sgd_training``).
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import SGDOptions, UDAAlgorithm, UDABatch, inverse_decay, sgd_training


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the softmax of ``logits`` (N, K)."""
    p = logits.softmax(dim=1)
    return -(p * p.clamp_min(1e-8).log()).sum(dim=1).mean()


class EntropyOptions(SGDOptions):
    weight: float = Field(0.1, ge=0, description="w: weight of the target entropy")


class EntropyMinimisation(UDAAlgorithm):
    """Source cross-entropy plus target entropy minimisation."""

    Options = EntropyOptions

    def __init__(self, options: EntropyOptions, classifier, context):
        super().__init__(options, classifier, context)
        self.classifier, self.update = sgd_training(classifier, options, context, inverse_decay)

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        logits = self.classifier(torch.cat([batch.x_s, batch.x_t]))
        n = len(batch.x_s)
        h = entropy(logits[n:])
        loss = F.cross_entropy(logits[:n], batch.y_s) + self.options.weight * h
        self.update(loss)
        return {"loss": loss.item(), "entropy": h.item()}
