"""FreeMatch (Wang et al., ICLR 2023): FixMatch with self-adaptive thresholds and a fairness term.

With :math:`q_b = p(x_b^{weak})` (no gradient) over the global unlabelled batch of :math:`\\mu B`
images and momentum :math:`\\lambda = 0.999`, each step first moves three running estimates,
started at :math:`\\tau_0 = 1/K`, :math:`\\tilde p_0 = \\tilde h_0 = \\mathbf{1}/K`:

.. math::
    \\tau_t = \\lambda \\tau_{t-1} + (1 - \\lambda) \\tfrac{1}{\\mu B} \\textstyle\\sum_b \\max q_b, \\qquad
    \\tilde p_t = \\lambda \\tilde p_{t-1} + (1 - \\lambda) \\tfrac{1}{\\mu B} \\textstyle\\sum_b q_b,

    \\tilde h_t = \\lambda \\tilde h_{t-1} + (1 - \\lambda)\\, \\mathrm{Hist}(\\arg\\max q_b) / \\mu B,

then gates each image by its class's threshold, the global one scaled by the class's share of
the running confidence (self-adaptive thresholding):

.. math::
    \\tau_t(c) = \\frac{\\tilde p_t(c)}{\\max_{c'} \\tilde p_t(c')}\\, \\tau_t, \\qquad
    \\mathcal{L}_u = \\frac{1}{\\mu B} \\sum_b \\mathbb{1}\\big[\\max q_b \\ge \\tau_t(\\hat y_b)\\big]\\,
      \\mathrm{CE}\\big(p(x_b^{strong}), \\hat y_b\\big), \\quad \\hat y_b = \\arg\\max q_b.

The fairness term compares, on the strong views the gate passed (:math:`\\bar p` their mean
prediction, :math:`\\bar h` the histogram of their argmaxes), the running and the batch's
class distributions, each divided by its histogram (``SumNorm`` makes a vector sum to one;
:math:`1/0` counts as 0):

.. math::
    \\mathcal{L}_f = \\sum_c \\mathrm{SumNorm}(\\tilde p_t / \\tilde h_t)_c\\,
      \\log \\mathrm{SumNorm}(\\bar p / \\bar h)_c
    \\qquad (= -H(\\cdot, \\cdot), \\text{ the paper's eq. 11}),

.. math:: \\mathcal{L} = \\mathrm{CE}(p(x_l^{weak}), y_l) + \\lambda_u \\mathcal{L}_u + \\lambda_f \\mathcal{L}_f,

with :math:`\\lambda_u = 1`, :math:`\\lambda_f = 0.001` (USB's configs, all of them) and the rest
FixMatch's: feed, SGD, cosine schedule, weight average (``aa_ssl.fixmatch``). The running
estimates are USB's ``FreeMatchThresholingHook``'s, saved with each training checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from .fixmatch import ConsistencyOptions, FixMatch


def sum_norm(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum()


def inverse(x: torch.Tensor) -> torch.Tensor:
    """:math:`1/x`, with 0 where :math:`x = 0` (a class no image fell in weighs nothing)."""
    return torch.where(x == 0, torch.zeros_like(x), 1 / x)


class SelfAdaptiveThreshold(torch.nn.Module):
    """The running :math:`\\tau_t`, :math:`\\tilde p_t`, :math:`\\tilde h_t` above, as buffers."""

    def __init__(self, num_classes: int, momentum: float = 0.999):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("tau", torch.tensor(1.0 / num_classes))
        self.register_buffer("p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("label_hist", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def update(self, probabilities: torch.Tensor) -> None:
        """One step of the three averages, from the global batch's weak-view probabilities."""
        m = self.momentum
        confidence, pseudo = probabilities.max(dim=1)
        self.tau.mul_(m).add_((1 - m) * confidence.mean())
        self.p_model.mul_(m).add_((1 - m) * probabilities.mean(dim=0))
        hist = torch.bincount(pseudo, minlength=len(self.p_model)).to(self.p_model.dtype)
        self.label_hist.mul_(m).add_((1 - m) * hist / hist.sum())

    @torch.no_grad()
    def mask(self, probabilities: torch.Tensor) -> torch.Tensor:
        """:math:`\\mathbb{1}[\\max q_b \\ge \\tau_t(\\hat y_b)]`, as floats."""
        confidence, pseudo = probabilities.max(dim=1)
        class_thresholds = self.tau * self.p_model / self.p_model.max()
        return (confidence >= class_thresholds[pseudo]).float()


def fairness_loss(logits_strong: torch.Tensor, mask: torch.Tensor, p_model: torch.Tensor, label_hist: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathcal{L}_f` above; 0 where the gate passed no image."""
    passed = logits_strong[mask.bool()]
    if len(passed) == 0:
        return logits_strong.sum() * 0.0  # keeps the graph (every process backpropagates the same parameters)
    probabilities = passed.softmax(dim=1)
    hist = torch.bincount(probabilities.argmax(dim=1), minlength=logits_strong.shape[1]).to(probabilities.dtype)
    running = sum_norm(p_model * inverse(label_hist))
    batch = sum_norm(probabilities.mean(dim=0) * inverse(hist / hist.sum()))
    return (running * torch.log(batch + 1e-12)).sum()


class FreeMatchOptions(ConsistencyOptions):
    ema_p: float = Field(0.999, gt=0, lt=1, description="momentum of the running confidence, class means and histogram")
    lambda_f: float = Field(0.001, description="weight of the fairness term")


class FreeMatch(FixMatch):
    """FixMatch's consistency, gated by self-adaptive class thresholds, plus fairness."""

    Options = FreeMatchOptions

    def __init__(self, options: FreeMatchOptions, classifier, context):
        super().__init__(options, classifier, context)
        self.threshold = SelfAdaptiveThreshold(context.num_classes, options.ema_p).to(context.accelerator.device)

    def unlabelled_terms(self, logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> tuple[torch.Tensor, dict]:
        probabilities = logits_weak.detach().softmax(dim=1)
        self.threshold.update(self.gathered(probabilities))  # first the estimates move, then they gate (USB)
        mask = self.threshold.mask(probabilities)
        pseudo = probabilities.argmax(dim=1)
        unlabelled = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
        fairness = fairness_loss(logits_strong, mask, self.threshold.p_model, self.threshold.label_hist)
        loss = self.options.lambda_u * unlabelled + self.options.lambda_f * fairness
        logs = {"unlabelled": unlabelled.item(), "fairness": fairness.item(), "mask": mask.mean().item(), "tau": self.threshold.tau.item()}
        return loss, logs

    def extra_state(self) -> dict:
        return {"threshold": {k: v.cpu() for k, v in self.threshold.state_dict().items()}}

    def load_extra_state(self, state: dict) -> None:
        self.threshold.load_state_dict(state["threshold"])
