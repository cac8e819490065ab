"""Pseudo-labelling SSL that goes wrong from step ``$AA_FAKE_FAIL_AT`` (default 3) on: its loss
becomes NaN (``nanloss``), it raises (``boom``), or it logs a NaN (``nanlog``); ``boom`` as a UDA
algorithm too. Setting the variable past the last step is "fixing the plugin": same version, same
options, so a rerun resumes from the checkpoint the failure left."""

import os

import torch.nn.functional as F
from aa_core.api import SGDOptions, SSLAlgorithm, UDAAlgorithm, Update, sgd


def fail_at() -> int:
    return int(os.environ.get("AA_FAKE_FAIL_AT", "3"))


class PseudoLabel(SSLAlgorithm):
    Options = SGDOptions

    def __init__(self, options, classifier, context):
        super().__init__(options, classifier, context)
        optimizer = sgd({"all": classifier}, options, context)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator)

    def loss(self, batch, step):
        return F.cross_entropy(self.classifier(batch.x_l[0]), batch.y_l)

    def train_step(self, batch, step):
        loss = self.loss(batch, step)
        self.update(loss)
        return {"loss": loss.item()}


class NaNLoss(PseudoLabel):
    def loss(self, batch, step):
        return super().loss(batch, step) * (float("nan") if step >= fail_at() else 1.0)


class Boom(PseudoLabel):
    def loss(self, batch, step):
        if step >= fail_at():
            raise RuntimeError(f"kaboom at {step}")
        return super().loss(batch, step)


class NaNLog(PseudoLabel):
    def train_step(self, batch, step):
        logs = super().train_step(batch, step)
        return {**logs, "ratio": float("nan") if step >= fail_at() else 1.0}


class BoomUDA(UDAAlgorithm):
    Options = SGDOptions

    def __init__(self, options, classifier, context):
        super().__init__(options, classifier, context)
        optimizer = sgd({"all": classifier}, options, context)
        self.classifier, optimizer = context.accelerator.prepare(classifier, optimizer)
        self.update = Update(optimizer, context.accelerator)

    def train_step(self, batch, step):
        if step >= fail_at():
            raise ValueError("a shape went wrong")
        loss = F.cross_entropy(self.classifier(batch.x_s), batch.y_s)
        self.update(loss)
        return {"loss": loss.item()}
