"""CDTrans: cross-domain transformer (Xu et al., ICLR 2022).

Stage one is the core's source-only training of the vision transformer; CDTrans continues from
it. Every ``total_steps / refreshes`` steps it labels the whole target and pairs source with
target images (``centre_aware_pairs``: SHOT pseudo-labels :math:`\\hat y_t`, nearest neighbours
both ways, the label-consistency filter), on deterministic views of both sets, then trains the
weight-shared three-branch transformer (``three_branches``) on batches of pairs (in the
adaptation view) with

.. math::
    \\mathcal L = \\mathrm{CE}(o_s, y_s) + \\mathrm{CE}(o_t, \\hat y_t)
      + \\underbrace{\\overline{\\textstyle -\\sum_k \\mathrm{softmax}(o_{st})_k
      \\log \\mathrm{softmax}(o_t)_k}}_{\\text{distillation}}

where :math:`o_s, o_t, o_{st}` are the source, target and source-target (cross-attention)
branches' logits. The target branch learns the pseudo-labels and, by distillation, the
predictions of the cross-attention branch, which sees source and target together; the target
branch alone predicts afterwards (the predictor is the classifier itself). This is the authors'
corrected loss (CDTrans/CDTrans commit 8ee48d0, ``processor/processor_uda.py``): the teacher's
probabilities are not detached, so the distillation also trains the cross branch, and no label
smoothing is applied during adaptation (the reference's ``uda.yml``; smoothing is for stage one).

Defaults are the paper's: SGD (momentum 0.9, no Nesterov, weight decay 1e-4) at lr 0.008 for
every layer, linear warm-up over the first quarter of training then cosine decay (10 and 40
epochs), gradient norm clipped at 1, four pair refreshes (every 10 of 40 epochs). Variants:
``label_filter=false`` keeps every nearest-neighbour pair (the reference's
``WITH_PSEUDO_LABEL_FILTER``). The paper's backbones are DeiT-S and DeiT-B
(``model.backbone=deit_small_patch16_224``); the default task gets ``aa_vit_tiny``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.utils.data import Dataset

from aa_core.api import AAError, Needs, SGDOptions, TrainingContext, UDAAlgorithm, UDABatch, UDAData, Update, lambda_lr, sgd, warmup_cosine
from aa_uda.centre_aware_pairs import centre_aware_pairs, shot_labels
from aa_uda.three_branches import ThreeBranches


def distillation(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """:math:`\\overline{-\\sum_k \\mathrm{softmax}(teacher)_k \\log \\mathrm{softmax}(student)_k}`."""
    return -(teacher.softmax(dim=1) * student.log_softmax(dim=1)).sum(dim=1).mean()


@dataclass
class PairBatch(UDABatch):
    """Paired source and target images: ``x_s[i]`` goes with ``x_t[i]``, whose pseudo-label is ``y_t[i]``."""

    y_t: torch.Tensor


class Pairs(Dataset):
    """``(x_s, y_s, x_t, pseudo y_t)`` for each (source index, target index) pair."""

    def __init__(self, source: Dataset, target: Dataset, pairs: torch.Tensor, pseudo: torch.Tensor):
        self.source, self.target = source, target
        self.pairs, self.pseudo = pairs.tolist(), pseudo.tolist()

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int):
        s, t = self.pairs[index]
        x_s, y_s = self.source[s]
        return x_s, y_s, self.target[t], self.pseudo[t]


class CDTransOptions(SGDOptions):
    lr: float = Field(0.008, gt=0, description="learning rate of every layer (the paper's base lr)")
    weight_decay: float = 1e-4
    nesterov: bool = False
    backbone_lr_mult: float = Field(1.0, ge=0, description="CDTrans trains the whole transformer at one rate")
    refreshes: int = Field(4, ge=1, description="times the pairs are rebuilt over training, evenly spaced")
    label_filter: bool = Field(True, description="keep only pairs whose source label equals the target pseudo-label")
    warmup: float = Field(0.25, ge=0, lt=1, description="share of training with a linearly rising learning rate")
    max_grad_norm: float = Field(1.0, gt=0)


class CDTrans(UDAAlgorithm):
    """Source, target and cross-attention branches of one transformer, trained on centre-aware pairs."""

    Options = CDTransOptions
    # stage one, the source-only warm-up, trained longer than a CNN's: a transformer learns slower
    # from a few thousand images (digits task, dev refine with MixMatch: 0.959 mean over seeds
    # 0-2 after 1,500 steps, 0.937 after the core's 500; docs/protocol.md)
    needs = Needs(backbone="VisionTransformer", default_backbone="aa_vit_tiny", source_only_steps=1500)

    def __init__(self, options: CDTransOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        rest = torch.nn.ModuleList([classifier.bottleneck, classifier.head])
        optimizer = sgd({"backbone": classifier.backbone, "rest": rest}, options, context)
        self.network, optimizer = context.accelerator.prepare(ThreeBranches(classifier), optimizer)
        scheduler = lambda_lr(optimizer, context.total_steps, lambda p: warmup_cosine(p, options.warmup))
        self.update = Update(optimizer, context.accelerator, scheduler, max_grad_norm=options.max_grad_norm)
        self.pairs = 0
        self.labelled: tuple[torch.Tensor, torch.Tensor] | None = None  # the pseudo-labels and pairs in use

    def batches(self, data: UDAData) -> Iterator[PairBatch]:
        """Batches of pairs, the pairs rebuilt ``refreshes`` times over training."""
        return self.resume_batches(data, 0)

    def resume_batches(self, data: UDAData, done: int) -> Iterator[PairBatch]:
        """From step ``done`` on: within a refresh, the checkpoint's pairs (the model that made them is gone)."""
        per_refresh = math.ceil(max(self.context.total_steps, 1) / self.options.refreshes)
        into = done % per_refresh
        while True:
            if into == 0 or self.labelled is None:
                self.labelled = self.label_and_pair(data)
            pseudo, pairs = self.labelled
            self.pairs = len(pairs)
            loader = data.loaders(Pairs(data.source, data.target, pairs, pseudo), self.context.batch_size)
            for _, (x_s, y_s, x_t, y_t) in zip(range(per_refresh - into), islice(loader, into, None)):
                yield PairBatch(x_s, y_s, x_t, y_t)
            into = 0

    def extra_state(self) -> dict:
        return {"labelled": list(self.labelled) if self.labelled is not None else None}

    def load_extra_state(self, state: dict) -> None:
        self.labelled = tuple(state["labelled"]) if state["labelled"] is not None else None

    @torch.no_grad()
    def label_and_pair(self, data: UDAData) -> tuple[torch.Tensor, torch.Tensor]:
        """Target pseudo-labels and the filtered (source, target) pairs, from the current model on plain views.

        The reference labels and pairs on its test-time transform: an augmented view would move
        each image's features by chance, and with them its label and its partner.
        """
        accelerator = self.context.accelerator
        classifier = accelerator.unwrap_model(self.network).classifier
        training = classifier.training
        classifier.eval()
        size = 4 * self.context.batch_size
        source, target = data.plain()
        g_s, y_s = zip(*[(F.normalize(classifier.backbone(x), dim=1), y) for x, y in data.loaders.once(source, size)])
        g_t, f_t, o_t = [], [], []
        for x in data.loaders.once(target, size):
            g = classifier.backbone(x)
            f = classifier.bottleneck(g)
            g_t.append(F.normalize(g, dim=1)), f_t.append(f), o_t.append(classifier.head(f))
        classifier.train(training)
        pseudo = shot_labels(torch.cat(f_t), torch.cat(o_t))
        pairs = centre_aware_pairs(torch.cat(g_s), torch.cat(y_s), torch.cat(g_t), pseudo, self.options.label_filter)
        if len(pairs) == 0:
            raise AAError(
                "cdtrans found no source-target pair whose labels agree; train longer (source_only.steps) or set uda.label_filter=false"
            )
        if accelerator.num_processes > 1:  # every process trains on the main process's pairs
            from accelerate.utils import broadcast_object_list

            pseudo, pairs = broadcast_object_list([pseudo.cpu(), pairs.cpu()])
        return pseudo.cpu(), pairs.cpu()

    def train_step(self, batch: PairBatch, step: int) -> dict[str, float]:
        o_s, o_t, o_st = self.network(batch.x_s, batch.x_t)
        source = F.cross_entropy(o_s, batch.y_s)
        target = F.cross_entropy(o_t, batch.y_t)
        distilled = distillation(o_st, o_t)
        self.update(source + target + distilled)
        return {"source": source.item(), "target": target.item(), "distillation": distilled.item(), "pairs": float(self.pairs)}
