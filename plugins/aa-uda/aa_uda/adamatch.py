"""AdaMatch (Berthelot et al., ICLR 2022): one method for domain shift with an unlabelled target.

Each step sees a weak and a strong view of :math:`B` source images and of :math:`\\mu B` target
images (:math:`\\mu = 3`). The source images pass twice: alone (batch norm over the source only,
its running statistics left as they were) and with the target (batch norm over both), and their
logits are interpolated at random, element by element (random logit interpolation), so that the
source loss holds for either statistics:

.. math::
    z_S = \\lambda \\odot z_S^{alone} + (1 - \\lambda) \\odot z_S^{joint}, \\qquad \\lambda \\sim U(0, 1)^{2B \\times K}.

With :math:`p = \\mathrm{softmax}(z)` of the weak views (no gradient), distribution alignment
rescales the target's predictions by the ratio of the source's running class distribution
(an exponential average, momentum 0.999, from :math:`1/K`) to the target's (the mean of the last
128 batches, the window started at :math:`1/K`), and the threshold is relative to the source's
confidence:

.. math::
    \\tilde p_T = \\mathrm{Normalize}\\Big(p_T^{weak} \\cdot \\frac{\\epsilon + \\bar p_S}{\\epsilon + \\bar p_T}\\Big), \\qquad
    c_\\tau = \\tau \\cdot \\tfrac{1}{B} \\textstyle\\sum_b \\max p_{S,b}^{weak}, \\quad \\tau = 0.9,

.. math::
    \\mathcal{L} = \\tfrac12 \\big[\\mathrm{CE}(z_S^{weak}, y) + \\mathrm{CE}(z_S^{strong}, y)\\big]
      + w(t)\\, \\frac{1}{\\mu B} \\sum_b \\mathbb{1}[\\max \\tilde p_{T,b} \\ge c_\\tau]\\,
        \\mathrm{CE}\\big(z_{T,b}^{strong}, \\arg\\max \\tilde p_{T,b}\\big),

with the target weight warmed up over the first half of training,
:math:`w(t) = \\lambda_u (\\tfrac12 - \\tfrac12 \\cos(\\pi \\min(1, 2t/T)))`, :math:`\\lambda_u = 1`.
SGD with momentum 0.9 (not Nesterov), weight decay 1e-3 on weights only, learning rate
:math:`\\eta \\cos(\\arccos(0.25)\\, t/T)` (to a quarter of it), :math:`\\eta = 0.03`, or 0.003 with
a pretrained backbone (at a tenth), as ``fixmatch`` does; predictions from an exponential
moving average of the weights (0.999, warmed up: ``fixmatch``'s reason). These are the
authors' (google-research/adamatch ``domain_adaptation/adamatch.py``); the strong view is
``fixmatch``'s RandAugment where theirs is CTAugment. AdaMatch starts from the core's
source-only model like every UDA algorithm, and the refine stage may follow it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import (
    EMA,
    Needs,
    SGDOptions,
    TrainingContext,
    UDAAlgorithm,
    UDABatch,
    UDAData,
    Update,
    kept_statistics,
    lambda_lr,
    progress,
    sgd,
)

LR_SCRATCH, LR_PRETRAINED = 0.03, 0.003
EPSILON = 1e-6


def decay_to_a_quarter(p: float) -> float:
    """The authors' ``ScheduleCos(lr, 0.25)``: :math:`\\cos(\\arccos(0.25)\\, p)`."""
    return math.cos(math.acos(0.25) * p)


def warmup(p: float) -> float:
    """:math:`\\tfrac12 - \\tfrac12 \\cos(\\pi \\min(1, 2p))`: 0 at the start, 1 from half-way on."""
    return 0.5 - 0.5 * math.cos(math.pi * min(1.0, 2.0 * p))


class DistributionAlignment(torch.nn.Module):
    """The running :math:`\\bar p_S` (exponential) and :math:`\\bar p_T` (last ``window`` batches) above."""

    def __init__(self, num_classes: int, momentum: float = 0.999, window: int = 128):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("p_source", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("p_target_window", torch.full((window, num_classes), 1.0 / num_classes))
        self.register_buffer("seen", torch.tensor(0))

    @torch.no_grad()
    def update(self, p_source: torch.Tensor, p_target: torch.Tensor) -> None:
        """One batch of each domain's weak-view probabilities (the global batch)."""
        self.p_source.mul_(self.momentum).add_((1 - self.momentum) * p_source.mean(dim=0))
        self.p_target_window[self.seen % len(self.p_target_window)] = p_target.mean(dim=0)  # the oldest goes
        self.seen.add_(1)

    @torch.no_grad()
    def align(self, p_target: torch.Tensor) -> torch.Tensor:
        aligned = p_target * (EPSILON + self.p_source) / (EPSILON + self.p_target_window.mean(dim=0))
        return aligned / aligned.sum(dim=1, keepdim=True)


class AdaMatchOptions(SGDOptions):
    tau: float = Field(0.9, gt=0, le=1, description="relative threshold: a share of the source's mean confidence")
    uratio: int = Field(3, ge=1, description="target images per source image in a batch")
    lambda_u: float = Field(1.0, description="weight of the target loss once warmed up")
    ema_p: float = Field(0.999, gt=0, lt=1, description="momentum of the source's running class distribution")
    window: int = Field(128, ge=1, description="batches in the target's running class distribution")
    lr: float | None = Field(None, gt=0, description=f"{LR_SCRATCH}, or {LR_PRETRAINED} with a pretrained backbone")
    nesterov: bool = False
    ema_decay: float = Field(0.999, description="decay of the weight average used for predictions")
    ema_warmup: bool = Field(True, description="warm the EMA decay up (timm's rule); false is the authors' constant decay")


class AdaMatch(UDAAlgorithm):
    """Random logit interpolation, distribution alignment and a relative confidence threshold."""

    Options = AdaMatchOptions
    needs = Needs(views=("weak", "strong"))

    def __init__(self, options: AdaMatchOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        lr = options.lr or (LR_PRETRAINED if context.pretrained_backbone else LR_SCRATCH)
        rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head])
        optimizer = sgd(
            {"backbone": classifier.backbone, "rest": rest}, options.model_copy(update={"lr": lr}), context, decay_norm_and_bias=False
        )
        self.alignment = DistributionAlignment(context.num_classes, options.ema_p, options.window).to(context.accelerator.device)
        self.ema = EMA(classifier, options.ema_decay, warmup=options.ema_warmup)
        # lambda's draws apart from the global generator, which the views' augmentations draw from
        self.generator = torch.Generator(context.accelerator.device).manual_seed(context.seed)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator, lambda_lr(optimizer, context.total_steps, decay_to_a_quarter))

    def batches(self, data: UDAData):
        """Weak and strong views of B source and uratio * B target images."""
        source = data.loaders(data.source, self.context.batch_size)
        target = data.loaders(data.target, self.options.uratio * self.context.batch_size)
        for (weak, strong, y), (target_weak, target_strong) in zip(source, target):
            yield UDABatch((weak, strong), y, (target_weak, target_strong))

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        (weak, strong), (target_weak, target_strong) = batch.x_s, batch.x_t
        source, n_b = torch.cat([weak, strong]), len(weak)
        with kept_statistics(self.classifier):  # the source alone: its statistics normalise, the running ones stay
            alone = self.classifier(source)
        joint = self.classifier(torch.cat([source, target_weak, target_strong]))
        mix = torch.rand(alone.shape, generator=self.generator, device=alone.device, dtype=alone.dtype)
        logits = mix * alone + (1 - mix) * joint[: len(source)]
        logits_weak, logits_strong = logits[:n_b], logits[n_b:]
        target_logits_weak, target_logits_strong = joint[len(source) :].chunk(2)

        p_source = logits_weak.detach().softmax(dim=1)
        p_target = target_logits_weak.detach().softmax(dim=1)
        gather = self.context.accelerator.gather
        self.alignment.update(gather(p_source), gather(p_target))  # first the averages move, then they align (the authors')
        aligned = self.alignment.align(p_target)
        threshold = self.options.tau * p_source.max(dim=1).values.mean()
        confidence, pseudo = aligned.max(dim=1)
        mask = (confidence >= threshold).float()

        source_loss = 0.5 * (F.cross_entropy(logits_weak, batch.y_s) + F.cross_entropy(logits_strong, batch.y_s))
        target_loss = (F.cross_entropy(target_logits_strong, pseudo, reduction="none") * mask).mean()
        weight = self.options.lambda_u * warmup(progress(step, self.context.total_steps))
        loss = source_loss + weight * target_loss
        self.update(loss)
        self.ema.update(self.context.accelerator.unwrap_model(self.classifier))
        return {"loss": loss.item(), "source": source_loss.item(), "target": target_loss.item(), "mask": mask.mean().item(),
                "threshold": threshold.item(), "weight": weight}  # fmt: skip

    def predictor(self) -> torch.nn.Module:
        return self.ema.module

    def extra_state(self) -> dict:
        return {"alignment": {k: v.cpu() for k, v in self.alignment.state_dict().items()}}

    def load_extra_state(self, state: dict) -> None:
        self.alignment.load_state_dict(state["alignment"])
