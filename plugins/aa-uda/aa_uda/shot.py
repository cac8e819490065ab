"""SHOT: source hypothesis transfer (Liang et al., ICML 2020), adaptation without the source images.

The source model's head :math:`C` (the hypothesis) is frozen; its feature extractor
:math:`G` (backbone and bottleneck) is trained on the unlabelled target alone, with information
maximisation and self-supervised pseudo-labels. With :math:`p_i = \\mathrm{softmax}(C(G(x_i)))`
over a batch and :math:`\\bar p` their mean (:math:`\\epsilon = 10^{-5}`, as the authors'
``Entropy``):

.. math::
    \\mathcal{L}_{IM} = \\frac1B \\sum_i \\Big(-\\sum_k p_{ik} \\log(p_{ik} + \\epsilon)\\Big)
      + \\sum_k \\bar p_k \\log(\\bar p_k + \\epsilon),

confident predictions (the first term) spread over the classes (the second, :math:`-H(\\bar p)`).
The pseudo-labels :math:`\\hat y` are the nearest class centroid of the target's bottleneck
features by cosine, the centroids weighted by the predictions, then once more by the labels
(``centre_aware_pairs.shot_labels``), computed on plain views with the current model (in
evaluation mode) ``refreshes`` times over training (the authors: once per epoch of 15):

.. math::
    \\mathcal{L} = \\beta\\, \\mathrm{CE}(C(G(x)), \\hat y) + \\lambda_{IM} \\mathcal{L}_{IM}, \\qquad \\beta = 0.3,\\ \\lambda_{IM} = 1.

SGD with Nesterov momentum 0.9, weight decay 1e-3, learning rate :math:`0.01\\,(1 + 10p)^{-0.75}`,
the backbone at a tenth (the authors' ``lr_decay1``), the bottleneck at the full rate. SHOT
declares that it needs no source (``Needs(source=False)``): from a source-only model trained on
the synthetic source, or from the user's classifier (``model.init``), in which case the run
neither prompts nor generates. The authors train their source model with label smoothing (0.1);
the core's source-only training does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import islice

import torch
import torch.nn.functional as F
from pydantic import Field

from aa_core.api import Needs, SGDOptions, TrainingContext, UDAAlgorithm, UDAData, Update, inverse_decay, lambda_lr, sgd
from aa_uda.centre_aware_pairs import shot_labels

EPSILON = 1e-5


def information_maximisation(logits: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathcal{L}_{IM}` above: mean entropy minus the entropy of the mean prediction."""
    p = logits.softmax(dim=1)
    entropy = -(p * torch.log(p + EPSILON)).sum(dim=1).mean()
    mean = p.mean(dim=0)
    return entropy + (mean * torch.log(mean + EPSILON)).sum()


@dataclass
class TargetBatch:
    """Target images and their current pseudo-labels."""

    x_t: torch.Tensor
    y_t: torch.Tensor


class SHOTOptions(SGDOptions):
    beta: float = Field(0.3, ge=0, description="weight of the pseudo-label cross-entropy (the authors' cls_par)")
    im_weight: float = Field(1.0, ge=0, description="weight of information maximisation (the authors' ent_par)")
    refreshes: int = Field(15, ge=1, description="times the pseudo-labels are computed over training")
    backbone_lr_mult: float = Field(0.1, ge=0, description="the backbone's rate multiplier (the authors' lr_decay1), pretrained or not")


class SHOT(UDAAlgorithm):
    """The source head frozen; the extractor trained on the target by information maximisation and centroid pseudo-labels."""

    Options = SHOTOptions
    needs = Needs(source=False)

    def __init__(self, options: SHOTOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        classifier.head.requires_grad_(False)  # the source hypothesis stays as it is
        # the backbone at backbone_lr_mult whether pretrained or not: the authors' rule for their source model
        steady = replace(context, pretrained_backbone=True)
        optimizer = sgd({"backbone": classifier.backbone, "rest": classifier.bottleneck}, options, steady)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator, lambda_lr(optimizer, context.total_steps, inverse_decay))
        self.labels: torch.Tensor | None = None  # the pseudo-labels in use, one per target image

    def batches(self, data: UDAData) -> Iterator[TargetBatch]:
        """Target batches with their pseudo-labels, computed again ``refreshes`` times over training."""
        return self.resume_batches(data, 0)

    def resume_batches(self, data: UDAData, done: int) -> Iterator[TargetBatch]:
        """From step ``done`` on: within a refresh, the checkpoint's pseudo-labels (the model that made them is gone)."""
        loader = data.loaders(data.target, self.context.batch_size, indices=True)
        for _ in range(done):  # now, not lazily: the checkpoint's random states are loaded after this
            next(loader)
        return self.labelled(data, loader, done)

    def labelled(self, data: UDAData, loader: Iterator, done: int) -> Iterator[TargetBatch]:
        per_refresh = math.ceil(max(self.context.total_steps, 1) / self.options.refreshes)
        into = done % per_refresh
        while True:
            if into == 0 or self.labels is None:  # lazily: with the weights the checkpoint loaded
                self.labels = self.pseudo_labels(data)
            for index, x in islice(loader, per_refresh - into):
                yield TargetBatch(x, self.labels[index.cpu()].to(x.device))
            into = 0

    @torch.no_grad()
    def pseudo_labels(self, data: UDAData) -> torch.Tensor:
        """:math:`\\hat y` of every target image, from the current model on plain views."""
        accelerator = self.context.accelerator
        classifier = accelerator.unwrap_model(self.classifier)
        training = classifier.training
        classifier.eval()
        features, logits = [], []
        for x in data.loaders.once(data.plain()[1], 4 * self.context.batch_size):
            f = classifier.bottleneck(classifier.backbone(x))
            features.append(f.float().cpu()), logits.append(classifier.head(f).float().cpu())
        classifier.train(training)
        labels = shot_labels(torch.cat(features), torch.cat(logits))
        if accelerator.num_processes > 1:  # every process trains on the main process's labels
            from accelerate.utils import broadcast_object_list

            (labels,) = broadcast_object_list([labels])
        return labels

    def train_step(self, batch: TargetBatch, step: int) -> dict[str, float]:
        logits = self.classifier(batch.x_t)
        pseudo = F.cross_entropy(logits, batch.y_t)
        im = information_maximisation(logits)
        loss = self.options.beta * pseudo + self.options.im_weight * im
        self.update(loss)
        return {"loss": loss.item(), "pseudo_label": pseudo.item(), "im": im.item()}

    def extra_state(self) -> dict:
        return {"labels": self.labels}

    def load_extra_state(self, state: dict) -> None:
        self.labels = state["labels"]
