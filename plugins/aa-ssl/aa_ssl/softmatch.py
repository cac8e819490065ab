"""SoftMatch (Chen et al., ICLR 2023): FixMatch with a soft, truncated-Gaussian weight instead of a gate.

With :math:`q_b = p(x_b^{weak})` (no gradient) over the global unlabelled batch and momentum
:math:`m = 0.999`, uniform alignment first divides the prediction by the running class
distribution :math:`\\hat p_t` (started at the first batch's mean), towards the uniform :math:`u`:

.. math::
    \\hat p_t = m \\hat p_{t-1} + (1 - m) \\tfrac{1}{\\mu B} \\textstyle\\sum_b q_b, \\qquad
    \\tilde q_b = \\mathrm{Normalize}\\Big(q_b \\cdot \\frac{u + \\epsilon}{\\hat p_t + \\epsilon}\\Big), \\quad \\epsilon = 10^{-6}.

The aligned confidence :math:`c_b = \\max \\tilde q_b` moves a running mean and (unbiased)
variance, started at :math:`\\mu_0 = 1/K`, :math:`\\sigma^2_0 = 1`, and weighs each image by the
Gaussian truncated at the mean (images above it weigh 1):

.. math::
    \\hat\\mu_t = m \\hat\\mu_{t-1} + (1 - m)\\, \\mathrm{mean}_b\\, c_b, \\qquad
    \\hat\\sigma^2_t = m \\hat\\sigma^2_{t-1} + (1 - m)\\, \\mathrm{var}_b\\, c_b,

    \\lambda_b = \\exp\\Big(-\\frac{\\min(c_b - \\hat\\mu_t, 0)^2}{2 \\hat\\sigma^2_t / n^2}\\Big), \\quad n = 2,

.. math::
    \\mathcal{L} = \\mathrm{CE}(p(x_l^{weak}), y_l)
      + \\lambda_u \\frac{1}{\\mu B} \\sum_b \\lambda_b\\, \\mathrm{CE}\\big(p(x_b^{strong}), \\arg\\max q_b\\big).

The pseudo-label is the argmax of the prediction before alignment (USB: "uniform alignment in
softmatch do not use aligned probs for generating pseudo labels"); the rest is FixMatch's: feed,
SGD, cosine schedule, weight average (``aa_ssl.fixmatch``), :math:`\\lambda_u = 1`. The running
estimates are USB's ``DistAlignEMAHook`` (uniform target) and ``SoftMatchWeightingHook``'s,
saved with each training checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from .fixmatch import ConsistencyOptions, FixMatch

EPSILON = 1e-6


class UniformAlignment(torch.nn.Module):
    """The running class distribution :math:`\\hat p_t` and the alignment towards uniform."""

    def __init__(self, num_classes: int, momentum: float = 0.999):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("started", torch.tensor(False))

    @torch.no_grad()
    def update(self, probabilities: torch.Tensor) -> None:
        mean = probabilities.mean(dim=0)
        if self.started:
            self.p_model.mul_(self.momentum).add_((1 - self.momentum) * mean)
        else:  # USB starts the average at the first batch's mean, not at uniform
            self.p_model.copy_(mean)
            self.started.fill_(True)

    @torch.no_grad()
    def align(self, probabilities: torch.Tensor) -> torch.Tensor:
        uniform = 1.0 / len(self.p_model)
        aligned = probabilities * (uniform + EPSILON) / (self.p_model + EPSILON)
        return aligned / aligned.sum(dim=1, keepdim=True)


class TruncatedGaussianWeight(torch.nn.Module):
    """The running :math:`\\hat\\mu_t`, :math:`\\hat\\sigma^2_t` and the weight :math:`\\lambda_b` above."""

    def __init__(self, num_classes: int, momentum: float = 0.999, n_sigma: float = 2.0):
        super().__init__()
        self.momentum, self.n_sigma = momentum, n_sigma
        self.register_buffer("mu", torch.tensor(1.0 / num_classes))
        self.register_buffer("var", torch.tensor(1.0))

    @torch.no_grad()
    def update(self, confidence: torch.Tensor) -> None:
        m = self.momentum
        self.mu.mul_(m).add_((1 - m) * confidence.mean())
        self.var.mul_(m).add_((1 - m) * confidence.var(unbiased=True))

    @torch.no_grad()
    def weight(self, confidence: torch.Tensor) -> torch.Tensor:
        below = torch.clamp(confidence - self.mu, max=0.0)
        return torch.exp(-(below**2) / (2 * self.var / self.n_sigma**2))


class SoftMatchOptions(ConsistencyOptions):
    ema_p: float = Field(0.999, gt=0, lt=1, description="momentum of the running class distribution, mean and variance")
    n_sigma: float = Field(2.0, gt=0, description="the Gaussian's width: sigma / n_sigma")


class SoftMatch(FixMatch):
    """FixMatch's consistency, each image weighed by how its aligned confidence compares with the running mean."""

    Options = SoftMatchOptions

    def __init__(self, options: SoftMatchOptions, classifier, context):
        super().__init__(options, classifier, context)
        device = context.accelerator.device
        self.alignment = UniformAlignment(context.num_classes, options.ema_p).to(device)
        self.weighting = TruncatedGaussianWeight(context.num_classes, options.ema_p, options.n_sigma).to(device)

    def unlabelled_terms(self, logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> tuple[torch.Tensor, dict]:
        probabilities = logits_weak.detach().softmax(dim=1)
        self.alignment.update(self.gathered(probabilities))
        confidence = self.alignment.align(probabilities).max(dim=1).values
        self.weighting.update(self.gathered(confidence))  # first the estimates move, then they weigh (USB)
        weight = self.weighting.weight(confidence)
        unlabelled = (F.cross_entropy(logits_strong, probabilities.argmax(dim=1), reduction="none") * weight).mean()
        logs = {"unlabelled": unlabelled.item(), "mask": weight.mean().item(), "mu": self.weighting.mu.item()}
        return self.options.lambda_u * unlabelled, logs

    def extra_state(self) -> dict:
        return {name: {k: v.cpu() for k, v in getattr(self, name).state_dict().items()} for name in ("alignment", "weighting")}

    def load_extra_state(self, state: dict) -> None:
        self.alignment.load_state_dict(state["alignment"])
        self.weighting.load_state_dict(state["weighting"])
