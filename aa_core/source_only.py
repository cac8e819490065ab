"""Source-only training: the baseline, and the start every adaptation continues from.

.. math:: \\mathcal{L} = \\mathrm{CE}(C(F(x_s)), y_s)

SGD with Nesterov momentum, learning rate :math:`\\eta_0 (1 + 10p)^{-0.75}` (the schedule DANN
and SymNets use), backbone at a tenth of it when pretrained.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from aa_core.contracts import TrainingContext, UDAAlgorithm, UDABatch, UDAData
from aa_core.training.schedules import inverse_decay, lambda_lr


class SGDOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-3
    nesterov: bool = True
    backbone_lr_mult: float = 0.1  # applies only to a pretrained backbone


def sgd(modules: dict[str, torch.nn.Module], options: SGDOptions, context: TrainingContext) -> torch.optim.SGD:
    """SGD over ``modules``; a pretrained ``backbone`` gets ``backbone_lr_mult`` of the rate."""
    groups = []
    for name, module in modules.items():
        mult = options.backbone_lr_mult if name == "backbone" and context.pretrained_backbone else 1.0
        groups.append({"params": list(module.parameters()), "lr": options.lr * mult})
    return torch.optim.SGD(
        groups, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay, nesterov=options.nesterov
    )


class SourceOnly(UDAAlgorithm):
    """Cross-entropy on the labelled source; the target is not used."""

    Options = SGDOptions

    def __init__(self, options: SGDOptions, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        optimizer = sgd(
            {"backbone": classifier.backbone, "rest": torch.nn.ModuleList([classifier.bottleneck, classifier.head])},
            options,
            context,
        )
        self.scheduler = lambda_lr(optimizer, context.total_steps, inverse_decay)
        self.classifier, self.optimizer = context.accelerator.prepare(classifier, optimizer)

    def batches(self, data: UDAData) -> Iterator[UDABatch]:
        for x_s, y_s in data.loader(data.source, self.context.batch_size):
            yield UDABatch(x_s, y_s, x_s[:0])

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        loss = F.cross_entropy(self.classifier(batch.x_s), batch.y_s)
        self.optimizer.zero_grad()
        self.context.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item()}
