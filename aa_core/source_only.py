"""Source-only training: the baseline, and the start every adaptation continues from.

.. math:: \\mathcal{L} = \\mathrm{CE}(C(F(x_s)), y_s)

SGD with Nesterov momentum, learning rate :math:`\\eta_0 (1 + 10p)^{-0.75}` (the schedule DANN
and SymNets use), backbone at a tenth of it when pretrained. Options: the ``source_only``
config section.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.nn.functional as F

from aa_core.config import SourceOnlyConfig
from aa_core.contracts import TrainingContext, UDAAlgorithm, UDABatch, UDAData
from aa_core.training.optim import sgd_training
from aa_core.training.schedules import inverse_decay


class SourceOnly(UDAAlgorithm):
    """Cross-entropy on the labelled source; the target is not used."""

    Options = SourceOnlyConfig

    def __init__(self, options: SourceOnlyConfig, classifier, context: TrainingContext):
        super().__init__(options, classifier, context)
        self.classifier, self.update = sgd_training(classifier, options, context, inverse_decay)

    def batches(self, data: UDAData) -> Iterator[UDABatch]:
        for x_s, y_s in data.loaders(data.source, self.context.batch_size):
            yield UDABatch(x_s, y_s, x_s[:0])

    def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
        loss = F.cross_entropy(self.classifier(batch.x_s), batch.y_s)
        self.update(loss)
        return {"loss": loss.item()}
