"""MixMatch (Berthelot et al., 2019): guessed labels, sharpened, mixed with labelled images.

For a batch of labelled :math:`(x_b, p_b)` (one-hot) and unlabelled :math:`u_b`, with one weak
view of each :math:`x_b` and :math:`K` weak views :math:`\\hat u_{b,k}` of each :math:`u_b`:

.. math::
    q_b = \\mathrm{Sharpen}\\Big(\\frac1K \\sum_{k=1}^{K} p(\\hat u_{b,k}),\\ T\\Big), \\qquad
    \\mathrm{Sharpen}(p, T)_c = \\frac{p_c^{1/T}}{\\sum_j p_j^{1/T}}

(no gradient through :math:`q_b`; the guessing passes normalise with their batches' statistics
but leave batch norm's running statistics as they were, as the reference and USB do). All views,
labelled and unlabelled, with their targets, form :math:`\\mathcal W`, shuffled; each is mixed
with one of :math:`\\mathcal W`:

.. math::
    \\lambda \\sim \\mathrm{Beta}(\\alpha, \\alpha),\\quad \\lambda' = \\max(\\lambda, 1 - \\lambda),\\quad
    x' = \\lambda' x_1 + (1 - \\lambda') x_2,\\quad p' = \\lambda' p_1 + (1 - \\lambda') p_2

so that a mixed example stays closer to its own input. The loss

.. math::
    \\mathcal L = \\frac{1}{|\\mathcal X'|} \\sum_{x', p'} \\mathrm{H}(p', p(x'))
      + \\lambda_u(t)\\, \\frac{1}{C\\,|\\mathcal U'|} \\sum_{u', q'} \\lVert q' - p(u') \\rVert_2^2,
    \\qquad \\lambda_u(t) = \\lambda_u \\min\\big(1, t / (\\rho\\, T_{steps})\\big)

cross-entropy on mixed labelled, squared error on mixed unlabelled (``C`` classes), with the
unlabelled weight ramped up linearly over the first fraction :math:`\\rho` of training. Adam
(lr 0.002; a tenth of it for a timm ``VisionTransformer`` backbone, see below) with decoupled
weight decay 0.02 on weights (AdamW: each step multiplies them by
:math:`1 - 0.02 \\cdot \\mathrm{lr}`), predictions from an EMA of the weights (decay 0.999).
Defaults are the paper's for CIFAR-10 (K=2, T=0.5, alpha=0.75, lambda_u=75). The squared error
is a mean over the :math:`C` classes, as in the paper and its code, so :math:`\\mathcal L_U` shrinks
as :math:`1/C`; the paper and USB tune :math:`\\lambda_u` per data set rather than scale it with
:math:`C` (USB: 75 for CIFAR-10, 150 for CIFAR-100), and 75 is kept whatever :math:`C`:
docs/ssl-mixmatch.md says when to raise it.

Adam moves every weight by about ``lr`` per step whatever its scale, and transformers start
from weights about ten times smaller than convolutions (truncated normal, std 0.02). After
CDTrans on the digits task (``aa_vit_tiny``, seed 0), 500 refine steps at 0.002 lowered dev
accuracy from 0.903 to 0.878; at 0.0002 they raised it to 0.972. On ``aa_small_cnn`` 0.002 stays
the better (dev 0.983 against 0.967 at 0.0002, after DANN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import (
    EMA,
    Options,
    SSLAlgorithm,
    SSLBatch,
    SSLFeed,
    TrainingContext,
    Update,
    fused,
    kept_statistics,
    param_groups,
    progress,
)


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """:math:`p_c^{1/T} / \\sum_j p_j^{1/T}` along the last dimension."""
    p = p.pow(1 / temperature)
    return p / p.sum(dim=-1, keepdim=True)


def mixup(x: torch.Tensor, p: torch.Tensor, lam: float, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with ``order``'s, keeping the larger share :math:`\\lambda' = \\max(\\lambda, 1-\\lambda)`."""
    lam = max(lam, 1 - lam)
    return lam * x + (1 - lam) * x[order], lam * p + (1 - lam) * p[order]


def linear_rampup(step: int, total_steps: int, fraction: float) -> float:
    """0 at the start, 1 once ``fraction`` of the steps are done, linear in between."""
    return 1.0 if fraction <= 0 else min(1.0, progress(step, total_steps) / fraction)


class MixMatchLoss(torch.nn.Module):
    """:math:`\\mathcal L_X` and :math:`\\mathcal L_U` above, for logits of mixed examples and their mixed targets.

    Example::

        l_x, l_u = MixMatchLoss()(logits_x, targets_x, logits_u, targets_u)
    """

    def forward(self, logits_x, targets_x, logits_u, targets_u) -> tuple[torch.Tensor, torch.Tensor]:
        l_x = -(targets_x * F.log_softmax(logits_x, dim=1)).sum(dim=1).mean()
        l_u = F.mse_loss(logits_u.softmax(dim=1), targets_u)  # mean over examples and classes
        return l_x, l_u


class MixMatchOptions(Options):
    k: int = Field(2, ge=1, description="K: weak views of each unlabelled image averaged into its guess")
    temperature: float = Field(0.5, gt=0, description="T: sharpening temperature")
    alpha: float = Field(0.75, gt=0, description="Beta(alpha, alpha) of MixUp")
    lambda_u: float = Field(75.0, ge=0, description="weight of the unlabelled loss after the ramp-up")
    rampup: float = Field(1 / 64, ge=0, le=1, description="fraction of training over which lambda_u ramps up (16k of 1,024k steps)")
    lr: float | None = Field(None, gt=0, description="Adam's learning rate; unset: 0.002, or 0.0002 for a transformer backbone")
    weight_decay: float = Field(0.02, ge=0, description="decoupled weight decay, on weights only")
    backbone_lr_mult: float = Field(0.1, ge=0, description="backbone rate multiplier, pretrained backbones only")
    ema_decay: float = Field(0.999, description="decay of the weight average used for predictions")
    ema_warmup: bool = Field(True, description="warm the EMA decay up (timm's rule); false is the reference's constant decay")


def default_lr(backbone: torch.nn.Module) -> float:
    """0.002, the paper's; 0.0002 for a transformer, whose small weights Adam's steps would swamp."""
    transformer = any(cls.__name__ == "VisionTransformer" for cls in type(backbone).__mro__)
    return 0.0002 if transformer else 0.002


class MixMatch(SSLAlgorithm):
    """Sharpened guesses over K views, MixUp of labelled and unlabelled, EMA predictions."""

    Options = MixMatchOptions

    @classmethod
    def feed(cls, options: MixMatchOptions, context: TrainingContext) -> SSLFeed:
        """B weak labelled views; K weak views of each of B unlabelled images (the unconfident ones)."""
        return SSLFeed(context.batch_size, context.batch_size, ("weak",), ("weak",) * options.k)

    def __init__(self, options: MixMatchOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        self.loss = MixMatchLoss()
        self.generator = torch.Generator().manual_seed(context.seed)
        rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head])
        modules = {"backbone": classifier.backbone, "rest": rest}
        lr = options.lr or default_lr(classifier.backbone)
        groups = param_groups(modules, lr, options.weight_decay, options.backbone_lr_mult, context, decay_norm_and_bias=False)
        optimizer = torch.optim.AdamW(groups, lr=lr, **fused(context.accelerator))
        self.ema = EMA(classifier, options.ema_decay, warmup=options.ema_warmup)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator)

    @torch.no_grad()
    def guess(self, views: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The sharpened average prediction over the K views of each unlabelled image (running statistics kept)."""
        with kept_statistics(self.classifier):
            average = torch.stack([self.classifier(u).softmax(dim=1) for u in views]).mean(dim=0)
        return sharpen(average, self.options.temperature)

    def train_step(self, batch: SSLBatch, step: int) -> dict[str, float]:
        (x,), views = batch.x_l, batch.x_u
        n, c = len(x), self.context.num_classes
        q = self.guess(views)
        inputs = torch.cat([x, *views])
        targets = torch.cat([F.one_hot(batch.y_l, c).float(), *([q] * len(views))])
        lam = float(torch.distributions.Beta(self.options.alpha, self.options.alpha).sample())
        order = torch.randperm(len(inputs), generator=self.generator).to(inputs.device)
        mixed_x, mixed_p = mixup(inputs, targets, lam, order)
        logits = self.classifier(mixed_x)  # one pass: BatchNorm sees labelled and unlabelled together
        l_x, l_u = self.loss(logits[:n], mixed_p[:n], logits[n:], mixed_p[n:])
        weight = self.options.lambda_u * linear_rampup(step, self.context.total_steps, self.options.rampup)
        loss = l_x + weight * l_u
        self.update(loss)
        self.ema.update(self.context.accelerator.unwrap_model(self.classifier))
        return {"loss": loss.item(), "labelled": l_x.item(), "unlabelled": l_u.item(), "lambda_u": weight}

    def predictor(self) -> torch.nn.Module:
        return self.ema.module
