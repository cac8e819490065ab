"""DANN: domain-adversarial training of neural networks (Ganin & Lempitsky, 2015).

.. math::
    \\mathcal{L} = \\mathrm{CE}(C(f_s), y_s) + \\text{trade\\_off}\\cdot\\mathcal{L}_{adv},\\qquad
    \\mathcal{L}_{adv} = \\tfrac12\\big[\\mathrm{BCE}(D(R_\\lambda(f_s)), 1) + \\mathrm{BCE}(D(R_\\lambda(f_t)), 0)\\big]

:math:`f = F(x)` are the bottleneck features, :math:`D` the domain discriminator and
:math:`R_\\lambda` gradient reversal with :math:`\\lambda(p) = 2/(1+e^{-10p}) - 1` over training
progress :math:`p`. SGD with Nesterov momentum 0.9, weight decay 1e-3, learning rate
:math:`0.01\\,(1+10p)^{-0.75}`, a pretrained backbone at a tenth of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import (
    SGDOptions,
    TrainingContext,
    UDAAlgorithm,
    UDABatch,
    Update,
    inverse_decay,
    lambda_lr,
    progress,
    sgd,
    sigmoid_ramp,
)
from aa_uda.domain_discriminator import DomainDiscriminator
from aa_uda.gradient_reversal import reverse_gradient


class DomainAdversarialLoss(torch.nn.Module):
    """:math:`\\mathcal{L}_{adv}` above, for source features ``f_s`` and target features ``f_t``.

    Args:
        discriminator: maps features ``(N, d)`` and the domains' sizes to domain logits ``(N, 1)``
            (``DomainDiscriminator``: its batch norm takes each domain's statistics apart).

    Example::

        loss = DomainAdversarialLoss(DomainDiscriminator(256))
        adv = loss(f_s, f_t, coefficient=0.5)   # f_s: (32, 256), f_t: (32, 256)
        adv.backward()                          # the features receive reversed gradients
    """

    def __init__(self, discriminator: torch.nn.Module):
        super().__init__()
        self.discriminator = discriminator

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
        logits = self.discriminator(reverse_gradient(torch.cat([f_s, f_t]), coefficient), (len(f_s), len(f_t))).squeeze(1)
        d_s, d_t = logits[: len(f_s)], logits[len(f_s) :]
        return 0.5 * (
            F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s))
            + F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t))
        )


class DANNOptions(SGDOptions):
    trade_off: float = Field(1.0, description="weight of the adversarial loss")
    hidden: int = Field(1024, description="width of the discriminator")


class DANN(UDAAlgorithm):
    """Domain-adversarial training with a gradient reversal layer."""

    Options = DANNOptions

    def __init__(self, options: DANNOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        loss = DomainAdversarialLoss(DomainDiscriminator(classifier.features_dim, options.hidden))
        rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head, loss])
        optimizer = sgd({"backbone": classifier.backbone, "rest": rest}, options, context)
        self.classifier, self.adversarial, optimizer = context.accelerator.prepare(classifier, loss, optimizer)
        self.update = Update(optimizer, context.accelerator, lambda_lr(optimizer, context.total_steps, inverse_decay))

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        coefficient = sigmoid_ramp(progress(step, self.context.total_steps))
        logits, f = self.classifier(torch.cat([batch.x_s, batch.x_t]), with_features=True)
        n = len(batch.x_s)
        classification = F.cross_entropy(logits[:n], batch.y_s)
        f_s, f_t = f[:n], f[n:]
        adversarial = self.adversarial(f_s, f_t, coefficient)
        loss = classification + self.options.trade_off * adversarial
        self.update(loss)
        return {"loss": loss.item(), "cls": classification.item(), "adv": adversarial.item(), "lambda": coefficient}
