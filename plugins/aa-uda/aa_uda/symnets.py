"""SymNets: domain-symmetric networks (Zhang et al., 2019).

One classifier of width :math:`2K` on the features :math:`f = G(x)`: the source task classifier
:math:`C_s` (outputs :math:`1..K`) beside the target task classifier :math:`C_t` (outputs
:math:`K{+}1..2K`), and :math:`p^{st} = \\mathrm{softmax}` over all :math:`2K` outputs. With
:math:`P_s(x) = \\sum_{k \\le K} p^{st}_k(x)` and :math:`P_t(x) = \\sum_{k > K} p^{st}_k(x)`:

.. math::
    \\mathcal L_C = \\mathrm{CE}_K(C_s(f_s), y_s) + \\mathrm{CE}_K(C_t(f_s), y_s)
      - \\overline{\\log P_s(x_s)} - \\overline{\\log P_t(x_t)}

trains the classifier alone: both task classifiers on the source, and the two halves as a domain
discriminator. The feature extractor alone minimises

.. math::
    \\mathcal L_G = \\tfrac12 \\mathrm{CE}_{2K}(o_s, y_s) + \\tfrac12 \\mathrm{CE}_{2K}(o_s, y_s + K)
      + \\lambda \\Big[ -\\tfrac12 \\overline{\\log P_t(x_t)} - \\tfrac12 \\overline{\\log P_s(x_t)}
      - \\overline{\\textstyle\\sum_{k \\le K} q_k \\log q_k} \\Big], \\qquad q_k = p^{st}_k(x_t) + p^{st}_{k+K}(x_t)

category-level confusion on the source (the 2K-way cross-entropy of the logits, to both halves),
domain-level confusion and entropy on the target, with :math:`\\lambda(p) = 2/(1+e^{-10p}) - 1`.
Each loss reaches only its own parameters, as the reference's gradient split does. Source and
target pass the extractor apart, as in both reference repositories, so each batch norm normalises
each domain by its own statistics (and its running statistics follow both). SGD (Nesterov,
momentum 0.9, weight decay 1e-4), learning rate :math:`0.01 (1 + 10p)^{-0.75}`, a pretrained
backbone at a tenth. Predictions come from the target task classifier.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from aa_core.api import SGDOptions, TrainingContext, UDAAlgorithm, UDABatch, Update, inverse_decay, lambda_lr, progress, sgd, sigmoid_ramp


def log_mass(logits: torch.Tensor, half: slice) -> torch.Tensor:
    """:math:`\\log \\sum_{k \\in half} \\mathrm{softmax}(o)_k` per row, computed stably."""
    return logits[:, half].logsumexp(dim=1) - logits.logsumexp(dim=1)


class SymmetricLosses:
    """:math:`\\mathcal L_C` and :math:`\\mathcal L_G` above, from the :math:`2K` logits of source and target."""

    def __init__(self, num_classes: int):
        self.k = num_classes
        self.source_half, self.target_half = slice(0, num_classes), slice(num_classes, 2 * num_classes)

    def classifier(self, o_s: torch.Tensor, o_t: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
        task = F.cross_entropy(o_s[:, self.source_half], y_s) + F.cross_entropy(o_s[:, self.target_half], y_s)
        domain = -log_mass(o_s, self.source_half).mean() - log_mass(o_t, self.target_half).mean()
        return task + domain

    def category_confusion(self, o_s: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
        return 0.5 * F.cross_entropy(o_s, y_s) + 0.5 * F.cross_entropy(o_s, y_s + self.k)

    def domain_confusion(self, o_t: torch.Tensor) -> torch.Tensor:
        return -0.5 * log_mass(o_t, self.target_half).mean() - 0.5 * log_mass(o_t, self.source_half).mean()

    def entropy(self, o_t: torch.Tensor) -> torch.Tensor:
        p = o_t.softmax(dim=1)
        q = p[:, self.source_half] + p[:, self.target_half]
        return -(q * q.clamp_min(1e-12).log()).sum(dim=1).mean()


class TargetHalf(nn.Module):
    """The predictor's head: the :math:`2K`-wide classifier, read through its target task half."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(in_features, 2 * num_classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f)[:, self.num_classes :]

    def exported(self, describe) -> dict:
        """What ``aa export`` writes for this head: the outputs of ``fc`` from column K on."""
        return {"type": "columns", "start": self.num_classes, "parts": {"fc": describe(self.fc)}}


class SymNetsOptions(SGDOptions):
    weight_decay: float = 1e-4
    entropy: bool = Field(True, description="the target entropy term (the paper's 'symnet'; false is its 'no_em')")


class SymNets(UDAAlgorithm):
    """A 2K-way symmetric classifier; category- and domain-level confusion train the features."""

    Options = SymNetsOptions

    @classmethod
    def build_network(cls, classifier, options: SymNetsOptions) -> nn.Module:
        """The source-only head is replaced by the 2K-wide classifier, read through its target half."""
        classifier.head = TargetHalf(classifier.features_dim, classifier.num_classes)
        return classifier

    def __init__(self, options: SymNetsOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        self.losses = SymmetricLosses(context.num_classes)
        extractor = nn.Sequential(classifier.backbone, classifier.bottleneck)
        modules = {"backbone": classifier.backbone, "rest": nn.ModuleList([classifier.bottleneck, classifier.head])}
        optimizer = sgd(modules, options, context)
        self.g, self.fc, optimizer = context.accelerator.prepare(extractor, classifier.head.fc, optimizer)
        self.update = Update(optimizer, context.accelerator, lambda_lr(optimizer, context.total_steps, inverse_decay))

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        lam = sigmoid_ramp(progress(step, self.context.total_steps))
        f_s, f_t = self.g(batch.x_s), self.g(batch.x_t)  # apart: batch norm sees one domain at a time
        # the classifier's loss sees fixed features; the extractor's sees a fixed classifier
        o_s, o_t = self.fc(f_s.detach()), self.fc(f_t.detach())
        fc = self.context.accelerator.unwrap_model(self.fc)
        w, b = fc.weight.detach(), fc.bias.detach()
        g_s, g_t = F.linear(f_s, w, b), F.linear(f_t, w, b)
        loss_c = self.losses.classifier(o_s, o_t, batch.y_s)
        confusion = self.losses.domain_confusion(g_t)
        entropy = self.losses.entropy(g_t) if self.options.entropy else g_t.new_zeros(())
        loss_g = self.losses.category_confusion(g_s, batch.y_s) + lam * (confusion + entropy)
        self.update(loss_c + loss_g)
        logs = {"classifier": loss_c, "features": loss_g, "domain_confusion": confusion, "entropy": entropy}
        return {**{k: v.item() for k, v in logs.items()}, "lambda": lam}
