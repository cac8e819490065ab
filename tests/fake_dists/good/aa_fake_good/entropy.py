"""A third-party UDA algorithm: source cross-entropy plus target entropy minimisation.

.. math:: \\mathcal{L} = \\mathrm{CE}(C(F(x_s)), y_s) + w\\,\\frac1B\\sum_b H(p(x_t^b))
"""

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from aa_core.contracts import UDAAlgorithm


class EntropyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = 0.1
    lr: float = 0.01


class EntropyMinimisation(UDAAlgorithm):
    """Source cross-entropy plus target entropy minimisation."""

    Options = EntropyOptions

    def __init__(self, options, classifier, context):
        super().__init__(options, classifier, context)
        optimizer = torch.optim.SGD(classifier.parameters(), lr=options.lr, momentum=0.9)
        self.classifier, self.optimizer = context.accelerator.prepare(classifier, optimizer)

    def train_step(self, batch, step):
        logits = self.classifier(torch.cat([batch.x_s, batch.x_t]))
        n = len(batch.x_s)
        p_t = logits[n:].softmax(dim=1)
        entropy = -(p_t * p_t.clamp_min(1e-8).log()).sum(dim=1).mean()
        loss = F.cross_entropy(logits[:n], batch.y_s) + self.options.weight * entropy
        self.optimizer.zero_grad()
        self.context.accelerator.backward(loss)
        self.optimizer.step()
        return {"loss": loss.item(), "entropy": entropy.item()}
