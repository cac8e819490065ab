"""MCD: maximum classifier discrepancy (Saito et al., 2018).

A feature extractor :math:`G` (backbone and bottleneck) and two classifiers :math:`C_1, C_2`,
with the discrepancy of their target predictions

.. math:: d(x_t) = \\frac{1}{K} \\sum_{k=1}^{K} \\big| p_1(y{=}k \\mid x_t) - p_2(y{=}k \\mid x_t) \\big|,
    \\qquad p_i = \\mathrm{softmax}(C_i(G(x)))

(averaged over the batch). Each iteration takes three kinds of update:

A. :math:`\\min_{G, C_1, C_2}\\ \\mathrm{CE}(p_1(x_s), y_s) + \\mathrm{CE}(p_2(x_s), y_s) + \\epsilon\\,[H(p_1(x_t)) + H(p_2(x_t))]`;
B. :math:`\\min_{C_1, C_2}\\ \\mathrm{CE}(p_1(x_s), y_s) + \\mathrm{CE}(p_2(x_s), y_s)
   + \\epsilon\\,[H(p_1(x_t)) + H(p_2(x_t))] - w\\, d(x_t)`:
   the classifiers disagree as much as they can on the target while staying right on the source;
C. ``num_k`` times :math:`\\min_G\\ w\\, d(x_t)`: the features move the target where they agree.

:math:`H` is the batch's mean prediction entropy, :math:`\\epsilon` ``entropy_weight`` and
:math:`w` ``trade_off``. Each classifier is the reference's MLP: Dropout-Linear-BN-ReLU-Dropout-
Linear-BN-ReLU-Dropout-Linear. The defaults are mil-tokyo/MCD_DA's digits setting: Adam (lr 2e-4,
weight decay 5e-4) for :math:`G` and for the classifiers, :math:`w = 1`, :math:`\\epsilon = 0`.
For a pretrained ResNet, tllib's setting (``examples/domain_adaptation/image_classification/mcd.py``):
``optimizer=sgd`` (fixed lr 0.001, weight decay 5e-4; momentum 0.9 for the classifiers, none for
:math:`G`), ``hidden=1024``, ``entropy_weight=0.01``, and ``trade_off`` growing with the number
of classes: 10 on Office-31, 30 on Office-Home, 1 on VisDA-2017. Predictions come from the sum of both classifiers'
probabilities: the predictor's head returns :math:`\\log\\frac12(p_1 + p_2)`, so a following SSL
algorithm trains both classifiers through it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from aa_core.api import Dropout, Options, TrainingContext, UDAAlgorithm, UDABatch, Update, frozen, fused, param_groups


def discrepancy(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """:math:`d` above: the mean absolute difference of the two softmax outputs."""
    return (logits_1.softmax(dim=1) - logits_2.softmax(dim=1)).abs().mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """:math:`H` above: :math:`-\\frac1B \\sum_b \\sum_k p_{bk} \\log p_{bk}` of the softmax of ``logits`` (B, K)."""
    return -(logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1).mean()


class MCDClassifier(nn.Sequential):
    """One of MCD's two classifiers: Dropout-Linear-BN-ReLU-Dropout-Linear-BN-ReLU-Dropout-Linear."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, dropout: float):
        super().__init__(
            Dropout(dropout), nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            Dropout(dropout), nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            Dropout(dropout), nn.Linear(hidden, num_classes),
        )  # fmt: skip


class SumOfClassifiers(nn.Module):
    """The predictor's head: :math:`\\log \\frac12 (p_1 + p_2)` from the two classifiers' logits."""

    def __init__(self, c1: nn.Module, c2: nn.Module):
        super().__init__()
        self.c1, self.c2 = c1, c2

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return ((self.c1(f).softmax(dim=1) + self.c2(f).softmax(dim=1)) / 2).clamp_min(1e-12).log()

    def exported(self, describe) -> dict:
        """What ``aa export`` writes for this head: the mean of the two classifiers' probabilities."""
        return {"type": "mean_of_probabilities", "parts": {"c1": describe(self.c1), "c2": describe(self.c2)}}


class MCDOptions(Options):
    num_k: int = Field(4, ge=1, description="updates of the feature extractor per iteration (step C)")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="adam: MCD_DA's digits; sgd: tllib's pretrained ResNets")
    lr: float = Field(2e-4, gt=0, description="the learning rate of G and of the classifiers (fixed)")
    weight_decay: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, description="sgd: the classifiers' momentum (G takes none, as in tllib)")
    backbone_lr_mult: float = Field(1.0, ge=0, description="a pretrained backbone's rate multiplier (tllib: 1)")
    trade_off: float = Field(1.0, ge=0, description="w: weight of the discrepancy in steps B and C")
    entropy_weight: float = Field(0.0, ge=0, description="epsilon: weight of the target entropy in steps A and B")
    hidden: int = Field(256, ge=1, description="width of each classifier's hidden layers")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout before each classifier layer")


class MCD(UDAAlgorithm):
    """Two classifiers that disagree on the target, features that make them agree."""

    Options = MCDOptions

    @classmethod
    def build_network(cls, classifier, options: MCDOptions) -> nn.Module:
        """The source-only head is replaced by two classifiers, read through their summed probabilities."""

        def head() -> MCDClassifier:
            return MCDClassifier(classifier.features_dim, classifier.num_classes, options.hidden, options.dropout)

        classifier.head = SumOfClassifiers(head(), head())
        return classifier

    def __init__(self, options: MCDOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        accelerator = context.accelerator
        extractor = nn.Sequential(classifier.backbone, classifier.bottleneck)
        o = options
        g_groups = param_groups({"backbone": classifier.backbone, "bottleneck": classifier.bottleneck}, o.lr, o.weight_decay,
                                o.backbone_lr_mult, context)  # fmt: skip
        if o.optimizer == "adam":
            opt_g = torch.optim.Adam(g_groups, lr=o.lr, **fused(accelerator))
            opt_c = torch.optim.Adam(classifier.head.parameters(), lr=o.lr, weight_decay=o.weight_decay, **fused(accelerator))
        else:
            opt_g = torch.optim.SGD(g_groups, lr=o.lr, **fused(accelerator))
            opt_c = torch.optim.SGD(classifier.head.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                    **fused(accelerator))  # fmt: skip
        self.g, self.c1, self.c2, opt_g, opt_c = accelerator.prepare(extractor, classifier.head.c1, classifier.head.c2, opt_g, opt_c)
        self.update_all = Update([opt_g, opt_c], accelerator)
        self.update_g, self.update_c = Update(opt_g, accelerator), Update(opt_c, accelerator)

    def source_loss(self, f_s: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.c1(f_s), y_s) + F.cross_entropy(self.c2(f_s), y_s)

    def target_entropy(self, f_t: torch.Tensor) -> torch.Tensor:
        """:math:`\\epsilon\\,[H(p_1(x_t)) + H(p_2(x_t))]`; zero, with no pass, when ``entropy_weight`` is 0."""
        if not self.options.entropy_weight:
            return f_t.new_zeros(())
        return self.options.entropy_weight * (entropy(self.c1(f_t)) + entropy(self.c2(f_t)))

    def fit_source(self, batch: UDABatch) -> torch.Tensor:
        """A: the extractor and both classifiers on the source (and confident on the target, with ``entropy_weight``)."""
        loss = self.source_loss(self.g(batch.x_s), batch.y_s)
        if self.options.entropy_weight:
            loss = loss + self.target_entropy(self.g(batch.x_t))
        self.update_all(loss)
        return loss

    def maximise_discrepancy(self, batch: UDABatch) -> tuple[torch.Tensor, torch.Tensor]:
        """B: the classifiers disagree on the target as much as they can, staying right on the source.

        Source and target pass the extractor apart, as in the reference, so its batch norm sees
        one domain at a time. Returns the gap and the target features with their graph: the
        extractor has not moved since, so step C's first update reuses them.
        """
        with torch.no_grad():
            f_s = self.g(batch.x_s)
        f_t = self.g(batch.x_t)
        gap = discrepancy(self.c1(f_t.detach()), self.c2(f_t.detach()))
        self.update_c(self.source_loss(f_s, batch.y_s) + self.target_entropy(f_t.detach()) - self.options.trade_off * gap)
        return gap, f_t

    def minimise_discrepancy(self, batch: UDABatch, f_t: torch.Tensor | None = None) -> torch.Tensor:
        """C: the extractor moves the target where the classifiers agree.

        The classifiers are frozen: the gradient flows through them to the extractor, but none is
        computed for their weights. They are called unwrapped, so that under several processes no
        gradient of theirs is waited for.
        """
        f_t = self.g(batch.x_t) if f_t is None else f_t
        c1, c2 = self.classifier.head.c1, self.classifier.head.c2
        with frozen(c1, c2):
            gap = discrepancy(c1(f_t), c2(f_t))
            self.update_g(self.options.trade_off * gap)
        return gap

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        source = self.fit_source(batch)
        widest, f_t = self.maximise_discrepancy(batch)
        for _ in range(self.options.num_k):
            narrowed = self.minimise_discrepancy(batch, f_t)
            f_t = None  # B's features serve the first update only: the extractor moves with each
        return {"source": source.item(), "discrepancy_max": widest.item(), "discrepancy_min": narrowed.item()}
