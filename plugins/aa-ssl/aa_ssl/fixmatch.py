"""FixMatch (Sohn et al., 2020): pseudo-labels from weak views supervise strong views.

.. math::
    \\mathcal{L} = \\mathrm{CE}(p(x_l^{weak}), y_l)
      + \\lambda_u \\frac{1}{\\mu B} \\sum_{b=1}^{\\mu B}
        \\mathbb{1}\\big[\\max q_b \\ge \\tau\\big]\\, \\mathrm{CE}\\big(p(x_b^{strong}), \\arg\\max q_b\\big),
    \\qquad q_b = p(x_b^{weak})

with :math:`q_b` computed without gradient; the strong view is FixMatch's RandAugment at random
magnitudes, then Cutout, with timm's operations: their enhancement factors span [0.1, 1.9] and
Cutout 2-25% of the area, where the paper's Table 12 gives [0.05, 0.95] and a side of up to half
(docs/ssl-fixmatch.md). SGD (Nesterov, momentum 0.9, weight decay 5e-4 on weights only, not
biases or norms), learning rate :math:`\\eta\\cos(7\\pi k / 16K)` with :math:`\\eta = 0.03` for a
backbone trained here, and, for a pretrained backbone, the FixMatch-for-UDA practice (tllib):
:math:`\\eta = 0.003` with the backbone at a tenth. The final predictions come from an
exponential moving average of the weights (decay 0.999 after a warm-up, buffers copied).

Where it departs from the reference, an option says so: ``ema_warmup`` (on by default: timm's
warm-up of the decay, because the reference's constant 0.999 over a few hundred steps predicts
with weights that are still mostly the start's while the BatchNorm statistics it copies are the
trained model's: 0.58 instead of 0.97 on the digits' dev half), and ``unlabelled`` (which
target images the consistency term sees; docs/ssl-fixmatch.md).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import EMA, SGDOptions, SSLAlgorithm, SSLBatch, SSLFeed, TrainingContext, Update, cosine_decay, lambda_lr, sgd

LR_SCRATCH, LR_PRETRAINED = 0.03, 0.003


class FixMatchLoss(torch.nn.Module):
    """The unlabelled term above, averaged over all ``mu * B`` unlabelled images.

    Example::

        loss, mask = FixMatchLoss(threshold=0.95)(logits_weak, logits_strong)
    """

    def __init__(self, threshold: float = 0.95):
        super().__init__()
        self.threshold = threshold

    def forward(self, logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        confidence, pseudo = logits_weak.detach().softmax(dim=1).max(dim=1)
        mask = (confidence >= self.threshold).float()
        loss = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
        return loss, mask


class ConsistencyOptions(SGDOptions):
    """FixMatch's options but its threshold: what FreeMatch and SoftMatch share with it (USB's configs)."""

    lambda_u: float = Field(1.0, description="weight of the unlabelled loss")
    mu: int = Field(7, ge=1, description="unlabelled images per labelled image in a batch")
    lr: float | None = Field(None, gt=0, description=f"{LR_SCRATCH}, or {LR_PRETRAINED} with a pretrained backbone")
    weight_decay: float = Field(5e-4, description="on weights only, not on biases or norms")
    ema_decay: float = Field(0.999, description="decay of the weight average used for predictions")
    ema_warmup: bool = Field(True, description="warm the EMA decay up (timm's rule); false is the reference's constant decay")
    unlabelled: Literal["all", "unconfident"] = Field("all", description="which target images the consistency term sees")


class FixMatchOptions(ConsistencyOptions):
    threshold: float = Field(0.95, description="tau: confidence a pseudo-label needs")


class FixMatch(SSLAlgorithm):
    """Consistency between weak and strong views, gated by confidence.

    FreeMatch and SoftMatch are this algorithm with another gate: they override
    ``unlabelled_terms`` alone (the feed, optimiser, schedule and weight average are FixMatch's).
    """

    Options = FixMatchOptions

    @classmethod
    def feed(cls, options: FixMatchOptions, context: TrainingContext) -> SSLFeed:
        """B weak labelled views; weak and strong views of mu * B unlabelled images."""
        return SSLFeed(context.batch_size, options.mu * context.batch_size, ("weak",), ("weak", "strong"), options.unlabelled)

    def __init__(self, options: FixMatchOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        lr = options.lr or (LR_PRETRAINED if context.pretrained_backbone else LR_SCRATCH)
        rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head])
        optimizer = sgd(
            {"backbone": classifier.backbone, "rest": rest}, options.model_copy(update={"lr": lr}), context, decay_norm_and_bias=False
        )
        self.ema = EMA(classifier, options.ema_decay, warmup=options.ema_warmup)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator, lambda_lr(optimizer, context.total_steps, cosine_decay))

    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        (x_l,), (x_weak, x_strong) = batch.x_l, batch.x_u
        logits = self.classifier(torch.cat([x_l, x_weak, x_strong]))  # one pass: batch norm over all three
        n_l, n_u = len(x_l), len(x_weak)
        labelled = F.cross_entropy(logits[:n_l], batch.y_l)
        unlabelled, logs = self.unlabelled_terms(logits[n_l : n_l + n_u], logits[n_l + n_u :])
        loss = labelled + unlabelled
        self.update(loss)
        self.ema.update(self.context.accelerator.unwrap_model(self.classifier))
        return {"loss": loss.item(), "labelled": labelled.item(), **{name: float(value) for name, value in logs.items()}}

    def unlabelled_terms(self, logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """What the unlabelled images add to the loss, weighted, and the values to log."""
        unlabelled, mask = FixMatchLoss(self.options.threshold)(logits_weak, logits_strong)
        return self.options.lambda_u * unlabelled, {"unlabelled": unlabelled.item(), "mask": mask.mean().item()}

    def gathered(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` of every process's batch (USB's ``concat_all_gather``): running statistics
        see the whole global batch, as on one device."""
        return self.context.accelerator.gather(values)

    def predictor(self) -> torch.nn.Module:
        return self.ema.module
