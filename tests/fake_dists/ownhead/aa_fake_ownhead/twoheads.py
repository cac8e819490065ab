"""``twoheads``: source cross-entropy through two linear heads whose probabilities are averaged;
the head says how it is exported (``exported``). ``opaque``: a head that does not."""

import torch.nn.functional as F
from torch import nn

from aa_core.api import SGDOptions, UDAAlgorithm, Update, sgd


class AveragedHeads(nn.Module):
    """log of the mean of two heads' probabilities, the second head's logits at a temperature of 1."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.first, self.second = nn.Linear(features, classes), nn.Sequential(nn.ReLU(), nn.Linear(features, classes))

    def forward(self, f):
        return ((self.first(f).softmax(dim=1) + self.second(f).softmax(dim=1)) / 2).clamp_min(1e-12).log()

    def exported(self, describe):
        return {"type": "mean_of_probabilities", "parts": {"first": describe(self.first), "second": describe(self.second)}}


class Scaled(nn.Module):
    def __init__(self, features: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, f):
        return 2 * self.fc(f)


class TwoHeads(UDAAlgorithm):
    Options = SGDOptions
    head = AveragedHeads

    @classmethod
    def build_network(cls, classifier, options):
        classifier.head = cls.head(classifier.features_dim, classifier.num_classes)
        return classifier

    def __init__(self, options, classifier, context):
        super().__init__(options, classifier, context)
        optimizer = sgd({"all": classifier}, options, context)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator)

    def train_step(self, batch, step):
        loss = F.nll_loss(self.classifier(batch.x_s), batch.y_s)
        self.update(loss)
        return {"loss": loss.item()}


class Opaque(TwoHeads):
    head = Scaled
