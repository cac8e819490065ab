"""Every training step runs under mixed precision: bf16 autocast on the CPU, and on a GPU (where
one is present) fp16 with accelerate's gradient scaler and bf16: finite losses, a model that moved,
weights kept in full precision."""

import math

import pytest
import torch

from aa_core.api import SSLBatch, TrainingContext, UDABatch
from aa_core.config import ModelConfig
from aa_core.models.classifier import build_classifier

PRECISIONS = [("cpu", "bf16"), *([("cuda", "fp16"), ("cuda", "bf16")] if torch.cuda.is_available() else [])]
CLASSES = {
    "dann": ("aa_uda.dann", "DANN"), "mcd": ("aa_uda.mcd", "MCD"), "symnets": ("aa_uda.symnets", "SymNets"),
    "cdtrans": ("aa_uda.cdtrans", "CDTrans"), "fixmatch": ("aa_ssl.fixmatch", "FixMatch"), "mixmatch": ("aa_ssl.mixmatch", "MixMatch"),
}  # fmt: skip


@pytest.fixture(params=PRECISIONS, ids=lambda p: "-".join(p))
def mixed(request):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    device, precision = request.param
    AcceleratorState._reset_state(True)  # other tests made a full-precision one in this process
    yield Accelerator(cpu=device == "cpu", mixed_precision=precision)
    AcceleratorState._reset_state(True)


def weights(module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in module.parameters()])


def built(name: str, accelerator, backbone: str = "aa_small_cnn", steps: int = 5):
    import importlib

    module, class_name = CLASSES[name]
    cls = getattr(importlib.import_module(module), class_name)
    options = cls.Options()
    torch.manual_seed(0)
    classifier = build_classifier(ModelConfig(backbone=backbone), num_classes=3, channels=1)
    network = cls.build_network(classifier, options).to(accelerator.device)
    context = TrainingContext(accelerator, 3, total_steps=steps, batch_size=4, pretrained_backbone=False, seed=0)
    return cls, options, context, cls(options, network, context), network


@pytest.mark.parametrize("name", ["dann", "mcd", "symnets", "cdtrans"])
def test_every_uda_step_runs_under_mixed_precision(mixed, name):
    cdtrans, d = name == "cdtrans", mixed.device
    _, _, _, algorithm, network = built(name, mixed, backbone="aa_vit_tiny" if cdtrans else "aa_small_cnn")
    before = weights(network)
    x_s, y_s, x_t = torch.randn(4, 1, 8, 8, device=d), torch.tensor([0, 1, 2, 0], device=d), torch.randn(4, 1, 8, 8, device=d)
    if cdtrans:
        from aa_uda.cdtrans import PairBatch

        batch = PairBatch(x_s, y_s, x_t, torch.tensor([0, 1, 2, 1], device=d))
    else:
        batch = UDABatch(x_s, y_s, x_t)
    for step in range(3):  # fp16: a first step the scaler may skip (an inf gradient at its start scale) and more
        logs = algorithm.train_step(batch, step)
        assert all(math.isfinite(v) for v in logs.values()), logs
    assert not torch.equal(weights(network), before)


@pytest.mark.parametrize("name", ["fixmatch", "mixmatch"])
def test_every_ssl_step_runs_under_mixed_precision(mixed, name):
    cls, options, context, algorithm, network = built(name, mixed)
    feed, d = cls.feed(options, context), mixed.device
    before = weights(network)
    x_l = tuple(torch.randn(feed.labelled_batch_size, 1, 8, 8, device=d) for _ in feed.labelled_views)
    x_u = tuple(torch.randn(feed.unlabelled_batch_size, 1, 8, 8, device=d) for _ in feed.unlabelled_views)
    batch = SSLBatch(x_l=x_l, y_l=torch.arange(feed.labelled_batch_size, device=d) % 3, x_u=x_u)
    for step in range(3):  # fp16: a first step the scaler may skip (an inf gradient at its start scale) and more
        logs = algorithm.train_step(batch, step)
        assert all(math.isfinite(v) for v in logs.values()), logs
    assert not torch.equal(weights(network), before)
    assert all(p.dtype == torch.float32 for p in algorithm.predictor().parameters())  # the weights stay full precision
