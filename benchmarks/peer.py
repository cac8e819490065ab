"""aa's DANN and MCD against pytorch-adapt's, on the same data, network, batches and optimizers.

    pip install pytorch-adapt==0.0.83 "setuptools<81"   # a benchmark-only dependency (see below)
    python benchmarks/peer.py [--steps 3000] [--seed 0] [--keep DIR]

One `aa run --uda none --ssl none` synthesises the default task's source and trains the
source-only model. Then, for DANN and for MCD, both libraries start from those weights and take
``--steps`` steps on the same batches (aa's loaders, drawn once per library with the same seed),
the same network (aa's backbone and bottleneck as G, its head or MCD's two MLP heads as C, aa's
discriminator as D) and the same optimizers and schedule:

* DANN: SGD (lr 0.01, Nesterov momentum 0.9, weight decay 1e-3, ``(1 + 10p)^-0.75``), the digits
  preset's trade-off 0.1 on the domain loss. pytorch-adapt's gradient reversal has a constant
  weight of 1 where aa's ramps ``2 / (1 + exp(-10p)) - 1``: each library keeps its own.
* MCD: Adam (lr 2e-4, weight decay 5e-4) for G and for C, four G updates per step.

It prints test-half accuracy (dev half in parentheses) and training steps per second, side by
side. The aim: aa at least as accurate, and 1.3x pytorch-adapt's steps per second.

pytorch-adapt 0.0.83 pins torchmetrics 0.9.3, which imports ``pkg_resources`` (gone from
setuptools 81): install both in a virtual environment made with ``--system-site-packages``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from aa_core.contracts import UDABatch, UDAData


def build(root: Path, seed: int):
    """The run folder with source and source-only weights, the config, and the data."""
    from aa_core.config import load_config
    from aa_core.data.input_format import InputFormat
    from aa_core.data.loaders import Loaders
    from aa_core.data.prepared import Prepared
    from aa_core.data.target import Images
    from aa_core.data.views import Views
    from aa_core.pipeline import read_config
    from aa_core.run_folder import RunFolder
    from aa_core.stages.context import StageContext

    out = root / "base"
    cmd = [sys.executable, "-m", "aa_cli.main", "run", "--uda", "none", "--ssl", "none", "--seed", str(seed), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = RunFolder(out)
    config = load_config(base=read_config(folder))
    ctx = StageContext(config, folder)
    fmt = InputFormat(config.data, config.model)
    plain = fmt.plain()
    source = Views(Prepared(Images(ctx.source.paths), fmt.prepare()), [plain], labels=ctx.source.labels)
    target = Views(Prepared(ctx.target.images(), fmt.prepare()), [plain])
    return ctx, source, target, Loaders(ctx.accelerator, seed)


def accuracy(predict, ctx, target) -> tuple[float, float]:
    """Test-half and dev-half accuracy of ``predict`` (images -> logits); labels only score it."""
    with torch.no_grad():
        x = torch.stack([target[i] for i in range(len(target))])
        predicted = predict(x).argmax(dim=1)
    labels = torch.tensor(ctx.target.labels)
    test, dev = torch.tensor(ctx.target.test), torch.tensor(sorted(ctx.target.dev))
    return [(predicted[i] == labels[i]).float().mean().item() for i in (test, dev)]  # type: ignore[return-value]


def timed(step, batches, steps: int) -> float:
    """Steps per second over ``steps`` steps (the first 20 warm up and are not timed)."""
    for _, batch in zip(range(20), batches):
        step(batch)
    started = time.perf_counter()
    for _, batch in zip(range(steps - 20), batches):
        step(batch)
    return (steps - 20) / (time.perf_counter() - started)


def source_only(ctx):
    from aa_core.models.classifier import build_classifier
    from aa_core.training.weights import load_weights

    classifier = build_classifier(ctx.config.model, len(ctx.categories), ctx.config.data.channels, pretrained=False)
    return load_weights(classifier, ctx.folder.weights("source_only"))


def aa_side(ctx, name: str, data, steps: int):
    """aa's algorithm, loaded and configured as the adapt stage does (the digits preset included)."""
    from aa_core.api import TrainingContext
    from aa_core.config import load_config
    from aa_core.stages.context import StageContext

    chosen = StageContext(load_config(base=ctx.config.model_dump(mode="json"), flags={"uda": name}), ctx.folder)
    cls, options = chosen.implementation("uda")
    context = TrainingContext(ctx.accelerator, len(ctx.categories), steps, ctx.config.train.batch_size, False, ctx.config.seed)
    algorithm = cls(options, source_only(ctx), context)
    batches = algorithm.batches(data)
    counter = iter(range(steps))
    speed = timed(lambda b: algorithm.train_step(b, next(counter)), batches, steps)
    predictor = algorithm.predictor().eval()
    return speed, predictor


def peer_dann(ctx, data, steps: int):
    from pytorch_adapt.adapters import DANN
    from pytorch_adapt.containers import LRSchedulers, Models, Optimizers
    from pytorch_adapt.weighters import MeanWeighter

    from aa_core.api import inverse_decay, progress
    from aa_uda.domain_discriminator import DomainDiscriminator

    classifier = source_only(ctx)
    g = nn.Sequential(classifier.backbone, classifier.bottleneck)
    d = nn.Sequential(DomainDiscriminator(classifier.features_dim, 1024), nn.Flatten(0))
    sgd = (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": True})
    schedule = (torch.optim.lr_scheduler.LambdaLR, {"lr_lambda": lambda s: inverse_decay(progress(s, steps))})
    adapter = DANN(
        models=Models({"G": g, "C": classifier.head, "D": d}),
        optimizers=Optimizers(sgd),
        lr_schedulers=LRSchedulers(schedule),
        hook_kwargs={"weighter": MeanWeighter(weights={"src_domain_loss": 0.1, "target_domain_loss": 0.1})},
    )
    return run_peer(adapter, ctx, data, steps, lambda x: adapter.inference(x)["logits"])


def peer_mcd(ctx, data, steps: int):
    from pytorch_adapt.adapters import MCD
    from pytorch_adapt.containers import Models, Optimizers

    from aa_uda.mcd import MCDClassifier, MCDOptions

    o = MCDOptions()
    classifier = source_only(ctx)
    g = nn.Sequential(classifier.backbone, classifier.bottleneck)

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = (MCDClassifier(classifier.features_dim, classifier.num_classes, o.hidden, o.dropout) for _ in range(2))

        def forward(self, f):
            return [self.c1(f), self.c2(f)]

    adapter = MCD(
        models=Models({"G": g, "C": TwoHeads()}),
        optimizers=Optimizers((torch.optim.Adam, {"lr": o.lr, "weight_decay": o.weight_decay})),
        hook_kwargs={"repeat": o.num_k},
    )

    def predict(x):  # as aa's MCD: the sum of both classifiers' probabilities
        c1, c2 = adapter.models["C"](adapter.models["G"](x))
        return c1.softmax(dim=1) + c2.softmax(dim=1)

    return run_peer(adapter, ctx, data, steps, predict)


def run_peer(adapter, ctx, data, steps: int, predict):
    def step(batch):
        x_s, y_s, x_t = batch.x_s, batch.y_s, batch.x_t
        domains = {"src_domain": torch.zeros(len(x_s)), "target_domain": torch.ones(len(x_t))}
        adapter.training_step({"src_imgs": x_s, "src_labels": y_s, "target_imgs": x_t, **domains})
        for scheduler in adapter.lr_schedulers.values():
            scheduler.step()

    for model in adapter.models.values():
        model.train()
    batch_size = ctx.config.train.batch_size
    pairs = zip(data.loaders(data.source, batch_size), data.loaders(data.target, batch_size))  # as aa's UDAAlgorithm.batches
    speed = timed(step, (UDABatch(x_s, y_s, x_t) for (x_s, y_s), x_t in pairs), steps)
    for model in adapter.models.values():
        model.eval()
    return speed, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-peer-"))
    ctx, source, target, loaders = build(root, args.seed)
    print(f"default task, seed {args.seed}, {args.steps} steps, batch {ctx.config.train.batch_size} + {ctx.config.train.batch_size}")
    print("| algorithm | library | test (dev) accuracy | steps/s |")
    print("|---|---|---|---|")
    rows = {}
    for name, peer in (("dann", peer_dann), ("mcd", peer_mcd)):
        for library in ("aa", "pytorch-adapt"):
            torch.manual_seed(args.seed)
            data = UDAData(source, target, loaders)
            speed, predict = aa_side(ctx, name, data, args.steps) if library == "aa" else peer(ctx, data, args.steps)
            test, dev = accuracy(predict, ctx, target)
            rows[name, library] = (test, speed)
            print(f"| {name} | {library} | {test:.4f} ({dev:.4f}) | {speed:.1f} |", flush=True)
    for name in ("dann", "mcd"):
        (a_acc, a_speed), (p_acc, p_speed) = rows[name, "aa"], rows[name, "pytorch-adapt"]
        print(f"{name}: aa {a_acc - p_acc:+.4f} accuracy, {a_speed / p_speed:.2f}x the steps/s")


if __name__ == "__main__":
    main()
