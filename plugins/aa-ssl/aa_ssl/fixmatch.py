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
from pydantic import BaseModel, ConfigDict, Field

from aa_core.contracts import SSLAlgorithm, SSLBatch, TrainingContext
from aa_core.training.schedules import cosine_decay, lambda_lr


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


class FixMatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.95, description="tau: confidence a pseudo-label needs")
    lambda_u: float = Field(1.0, description="weight of the unlabelled loss")
    mu: int = Field(7, ge=1, description="unlabelled images per labelled image in a batch")
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    ema_decay: float = Field(0.999, description="decay of the weight average used for predictions")


class FixMatch(SSLAlgorithm):
    """Consistency between weak and strong views, gated by confidence."""

    Options = FixMatchOptions
    labelled_views = ("weak",)
    unlabelled_views = ("weak", "strong")

    def __init__(self, options: FixMatchOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        from timm.optim import param_groups_weight_decay
        from timm.utils import ModelEmaV3

        self.unlabelled_loss = FixMatchLoss(options.threshold)
        groups = param_groups_weight_decay(classifier, options.weight_decay)
        optimizer = torch.optim.SGD(groups, lr=options.lr, momentum=options.momentum, nesterov=options.nesterov)
        self.scheduler = lambda_lr(optimizer, context.total_steps, cosine_decay)
        # warm-up: the average follows the weights closely while training is short
        self.ema = ModelEmaV3(classifier, decay=options.ema_decay, use_warmup=True)
        self.classifier, self.optimizer = context.accelerator.prepare(classifier, optimizer)

    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        (x_l,), (x_weak, x_strong) = batch.x_l, batch.x_u
        logits = self.classifier(torch.cat([x_l, x_weak, x_strong]))
        n_l, n_u = len(x_l), len(x_weak)
        labelled = F.cross_entropy(logits[:n_l], batch.y_l)
        unlabelled, mask = self.unlabelled_loss(logits[n_l : n_l + n_u], logits[n_l + n_u :])
        loss = labelled + self.options.lambda_u * unlabelled
        self.optimizer.zero_grad()
        self.context.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.context.accelerator.unwrap_model(self.classifier), step=step)
        return {"loss": loss.item(), "labelled": labelled.item(), "unlabelled": unlabelled.item(), "mask": mask.mean().item()}

    def predictor(self) -> torch.nn.Module:
        return self.ema.module
