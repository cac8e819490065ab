"""FixMatch (Sohn et al., 2020): pseudo-labels from weak views supervise strong views.

.. math::
    \\mathcal{L} = \\mathrm{CE}(p(x_l^{weak}), y_l)
      + \\lambda_u \\frac{1}{\\mu B} \\sum_{b=1}^{\\mu B}
        \\mathbb{1}\\big[\\max q_b \\ge \\tau\\big]\\, \\mathrm{CE}\\big(p(x_b^{strong}), \\arg\\max q_b\\big),
    \\qquad q_b = p(x_b^{weak})

with :math:`q_b` computed without gradient. SGD (Nesterov, momentum 0.9, weight decay 5e-4 on
weights only, not biases or norms), learning rate :math:`\\eta\\cos(7\\pi k / 16K)`; the final
predictions come from an exponential moving average of the weights (decay 0.999).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import SGDOptions, SSLAlgorithm, SSLBatch, TrainingContext, Update, cosine_decay, lambda_lr, sgd


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


class FixMatchOptions(SGDOptions):
    threshold: float = Field(0.95, description="tau: confidence a pseudo-label needs")
    lambda_u: float = Field(1.0, description="weight of the unlabelled loss")
    mu: int = Field(7, ge=1, description="unlabelled images per labelled image in a batch")
    lr: float = 0.03
    weight_decay: float = Field(5e-4, description="on weights only, not on biases or norms")
    ema_decay: float = Field(0.999, description="decay of the weight average used for predictions")


class FixMatch(SSLAlgorithm):
    """Consistency between weak and strong views, gated by confidence."""

    Options = FixMatchOptions
    labelled_views = ("weak",)
    unlabelled_views = ("weak", "strong")

    def __init__(self, options: FixMatchOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        from timm.utils import ModelEmaV3

        self.unlabelled_loss = FixMatchLoss(options.threshold)
        rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head])
        optimizer = sgd({"backbone": classifier.backbone, "rest": rest}, options, context, decay_norm_and_bias=False)
        # warm-up: the average follows the weights closely while training is short
        self.ema = ModelEmaV3(classifier, decay=options.ema_decay, use_warmup=True)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator, lambda_lr(optimizer, context.total_steps, cosine_decay))

    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        (x_l,), (x_weak, x_strong) = batch.x_l, batch.x_u
        logits = self.classifier(torch.cat([x_l, x_weak, x_strong]))
        n_l, n_u = len(x_l), len(x_weak)
        labelled = F.cross_entropy(logits[:n_l], batch.y_l)
        unlabelled, mask = self.unlabelled_loss(logits[n_l : n_l + n_u], logits[n_l + n_u :])
        loss = labelled + self.options.lambda_u * unlabelled
        self.update(loss)
        self.ema.update(self.context.accelerator.unwrap_model(self.classifier), step=step)
        return {"loss": loss.item(), "labelled": labelled.item(), "unlabelled": unlabelled.item(), "mask": mask.mean().item()}

    def predictor(self) -> torch.nn.Module:
        return self.ema.module
