r"""Pseudo-Label (Lee 2013) as an SSL algorithm: the confident part's pseudo-labels, plus the
network's own confident predictions on the rest.

.. math::
    \mathcal{L} = \frac1{B_l}\sum_{b=1}^{B_l} \mathrm{CE}\big(p(x_b), y_b\big)
      + w\,\frac1{B_u}\sum_{b=1}^{B_u} \mathbb{1}\big[\max p(u_b) \ge \tau\big]\,
        \mathrm{CE}\big(p(u_b), \arg\max p(u_b)\big)

with :math:`y_b` the confident split's pseudo-labels, :math:`u_b` the unconfident images, both
through the weak view, and the target of the second term taken without a gradient. SGD with the
core's parameter groups and a constant rate (``sgd_training``).
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import SGDOptions, SSLAlgorithm, SSLBatch, SSLFeed, sgd_training


class PseudoLabelOptions(SGDOptions):  # lr 0.01, momentum 0.9, weight_decay 1e-3, nesterov, backbone_lr_mult 0.1
    weight: float = Field(1.0, ge=0, description="w: weight of the unlabelled term")
    threshold: float = Field(0.95, gt=0, le=1, description="tau: confidence a prediction needs to count as a label")


def pseudo_label_loss(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the batch of the masked cross-entropy to the argmax, and the mask."""
    probabilities = logits.detach().softmax(dim=1)
    confidence, target = probabilities.max(dim=1)
    mask = (confidence >= threshold).float()
    return (F.cross_entropy(logits, target, reduction="none") * mask).mean(), mask


class PseudoLabel(SSLAlgorithm):
    """Cross-entropy on the pseudo-labelled part and on the network's confident predictions of the rest."""

    Options = PseudoLabelOptions

    @classmethod
    def feed(cls, options, context) -> SSLFeed:
        # one weak view each: batch.x_l and batch.x_u are one-tensor tuples
        return SSLFeed(context.batch_size, context.batch_size, ("weak",), ("weak",), "unconfident")

    def __init__(self, options: PseudoLabelOptions, classifier, context):
        super().__init__(options, classifier, context)
        self.classifier, self.update = sgd_training(classifier, options, context)

    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:  # step counts from 0
        (x_l,), (x_u,) = batch.x_l, batch.x_u
        logits = self.classifier(torch.cat([x_l, x_u]))
        labelled = F.cross_entropy(logits[: len(x_l)], batch.y_l)
        unlabelled, mask = pseudo_label_loss(logits[len(x_l) :], self.options.threshold)
        loss = labelled + self.options.weight * unlabelled
        self.update(loss)
        return {"loss": loss.item(), "unlabelled": unlabelled.item(), "mask": mask.mean().item()}
