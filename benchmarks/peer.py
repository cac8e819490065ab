"""aa's DANN and MCD against pytorch-adapt's, on the same data, network, batches and optimizers.

    pip install pytorch-adapt==0.0.83 "setuptools<81"   # a benchmark-only dependency (see below)
    python benchmarks/peer.py [--steps 3000] [--seeds 0,1,2] [--algorithms dann,mcd] [--keep DIR]

For each seed, one `aa run --uda none --ssl none` synthesises the default task's source and trains
the source-only model. Then, for DANN and for MCD, both libraries start from those weights and take
``--steps`` steps on the same batches (aa's loaders, drawn once per library with the same seed),
the same network (aa's backbone and bottleneck as G, its head or MCD's two MLP heads as C, aa's
discriminator as D), the same objective and the same optimizers and schedule:

* DANN: ``CE + trade_off * (BCE_s + BCE_t) / 2`` with the paper's trade-off 1, SGD (lr
  0.01, Nesterov momentum 0.9, weight decay 1e-3, ``(1 + 10p)^-0.75``). pytorch-adapt's gradient
  reversal has a constant weight of 1 where aa's ramps ``2 / (1 + exp(-10p)) - 1``: each library
  keeps its own.
* MCD: the paper's (and MCD_DA's) sums ``CE_1 + CE_2`` and ``CE_1 + CE_2 - d``; Adam (lr 2e-4,
  weight decay 5e-4) for G and for C, four G updates per step.

pytorch-adapt averages the losses of an update unless told otherwise (its ``MeanWeighter``):
DANN's would become ``(CE + 0.1 BCE_s + 0.1 BCE_t) / 3``, a third of the step size, and under
Adam's coupled weight decay MCD's would decay 2-3x harder. Its ``SumWeighter`` with the weights
above gives both the objective aa optimises, so the comparison is of implementations.

aa's speed comes from how it runs the same computation: fused optimizer kernels, channels-last
convolution weights, and in MCD no weight gradients for the frozen classifiers in step C, step
B's target features reused by step C's first update, and on the CPU dropout masks drawn from
uniform numbers (``aa_core.models.dropout``) where pytorch-adapt's classifiers keep torch's own
``nn.Dropout``.

The two libraries train side by side in one process, taking turns of ``--turn`` steps, so that
both see the same machine: on a shared 2-core machine one library alone measured anywhere from
57 to 92 steps/s from one run to the next. Each turn is timed, data loading included.

It prints test-half accuracy (dev half in parentheses) and training steps per second per seed,
then the mean accuracy over the seeds and the steps per second over all turns. The aim: aa at
least as accurate, and 1.3x pytorch-adapt's steps per second.

pytorch-adapt 0.0.83 pins torchmetrics 0.9.3, which imports ``pkg_resources`` (gone from
setuptools 81): install both in a virtual environment made with ``--system-site-packages``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch import nn

from aa_core.contracts import UDABatch, UDAData


def build(root: Path, seed: int):
    """The run folder with source and source-only weights, the config, and the data."""
    from aa_core.config import load_config
    from aa_core.context import StageContext
    from aa_core.data.input_format import InputFormat
    from aa_core.data.loaders import Loaders
    from aa_core.data.views import Views
    from aa_core.pipeline import read_config
    from aa_core.run_folder import RunFolder

    out = root / "base"
    cmd = [sys.executable, "-m", "aa_cli.main", "run", "--uda", "none", "--ssl", "none", "--seed", str(seed), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = RunFolder(out)
    config = load_config(base=read_config(folder))
    ctx = StageContext(config, folder)
    fmt = InputFormat(config.data, config.model)
    plain = fmt.plain()
    source = Views(ctx.prepared(ctx.source.paths), [plain], labels=ctx.source.labels)
    target = Views(ctx.prepared(ctx.target.paths), [plain])
    return ctx, source, target, Loaders(ctx.accelerator, seed)


def accuracy(predict, ctx, target) -> tuple[float, float]:
    """Test-half and dev-half accuracy of ``predict`` (images -> logits); labels only score it."""
    with torch.no_grad():
        x = torch.stack([target[i] for i in range(len(target))])
        predicted = predict(x).argmax(dim=1)
    labels = torch.tensor(ctx.target.labels)
    test, dev = torch.tensor(ctx.target.test), torch.tensor(sorted(ctx.target.dev))
    return [(predicted[i] == labels[i]).float().mean().item() for i in (test, dev)]  # type: ignore[return-value]


class Trainer:
    """One library's training: ``step(batch)`` over its own ``batches``, timed turn by turn.

    Each keeps its own stream of torch's global random numbers (dropout draws from it), so that
    what it learns does not depend on the other library's turns.
    """

    def __init__(self, step, batches, predict):
        self.step, self.batches, self.predict = step, batches, predict
        self.done, self.timed, self.seconds = 0, 0, 0.0
        self.random = torch.get_rng_state()

    def train(self, steps: int, timed: bool = True) -> None:
        torch.set_rng_state(self.random)
        started = time.perf_counter()
        for _, batch in zip(range(steps), self.batches):
            self.step(batch)
        if timed:
            self.seconds += time.perf_counter() - started
            self.timed += steps
        self.done += steps
        self.random = torch.get_rng_state()


def race(trainers: list[Trainer], steps: int, turn: int) -> None:
    """``steps`` steps each, in turns; the first 20 warm up and are not timed."""
    for trainer in trainers:
        trainer.train(20, timed=False)
    while trainers[0].done < steps:
        for trainer in trainers:
            trainer.train(min(turn, steps - trainer.done))


def source_only(ctx):
    from aa_core.models.classifier import build_classifier
    from aa_core.training.weights import load_weights

    classifier = build_classifier(ctx.config.model, len(ctx.categories), ctx.config.data.channels, pretrained=False)
    return load_weights(classifier, ctx.folder.weights("source_only"))


def aa_algorithm(ctx, name: str):
    """aa's algorithm class and options, as the adapt stage loads them (the digits preset included)."""
    from aa_core.config import load_config
    from aa_core.context import StageContext

    return StageContext(load_config(flags={"uda": name}), ctx.folder).implementation("uda")


def aa_side(ctx, data, steps: int, name: str):
    """aa's algorithm, trained as the adapt stage trains it."""
    from aa_core.api import TrainingContext

    cls, options = aa_algorithm(ctx, name)
    context = TrainingContext(ctx.accelerator, len(ctx.categories), steps, ctx.config.train.batch_size, False, ctx.config.seed)
    algorithm = cls(options, cls.build_network(source_only(ctx), options), context)
    counter = iter(range(steps))

    def predict(x):
        return algorithm.predictor().eval()(x)

    return Trainer(lambda b: algorithm.train_step(b, next(counter)), algorithm.batches(data), predict)


def peer_dann(ctx, data, steps: int):
    from pytorch_adapt.adapters import DANN
    from pytorch_adapt.containers import LRSchedulers, Models, Optimizers
    from pytorch_adapt.weighters import SumWeighter

    from aa_core.api import inverse_decay, progress
    from aa_uda.domain_discriminator import DomainDiscriminator

    _, o = aa_algorithm(ctx, "dann")
    classifier = source_only(ctx)
    g = nn.Sequential(classifier.backbone, classifier.bottleneck)
    d = nn.Sequential(DomainDiscriminator(classifier.features_dim, o.hidden), nn.Flatten(0))
    sgd = (torch.optim.SGD, {"lr": o.lr, "momentum": o.momentum, "weight_decay": o.weight_decay, "nesterov": o.nesterov})
    schedule = (torch.optim.lr_scheduler.LambdaLR, {"lr_lambda": lambda s: inverse_decay(progress(s, steps))})
    adapter = DANN(
        models=Models({"G": g, "C": classifier.head, "D": d}),
        optimizers=Optimizers(sgd),
        lr_schedulers=LRSchedulers(schedule),
        hook_kwargs={"weighter": SumWeighter(weights={"src_domain_loss": o.trade_off / 2, "target_domain_loss": o.trade_off / 2})},
    )
    return run_peer(adapter, ctx, data, lambda x: adapter.inference(x)["logits"])


def peer_mcd(ctx, data, _steps: int):
    from pytorch_adapt.adapters import MCD
    from pytorch_adapt.containers import Models, Optimizers
    from pytorch_adapt.weighters import SumWeighter

    from aa_uda.mcd import MCDClassifier

    _, o = aa_algorithm(ctx, "mcd")
    classifier = source_only(ctx)
    g = nn.Sequential(classifier.backbone, classifier.bottleneck)

    def torch_mlp() -> MCDClassifier:  # the same MLP with torch's own dropout, as a pytorch-adapt user writes it
        mlp = MCDClassifier(classifier.features_dim, classifier.num_classes, o.hidden, o.dropout)
        for i, layer in enumerate(mlp):
            if isinstance(layer, nn.Dropout):
                mlp[i] = nn.Dropout(layer.p)
        return mlp

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = torch_mlp(), torch_mlp()

        def forward(self, f):
            return [self.c1(f), self.c2(f)]

    adapter = MCD(
        models=Models({"G": g, "C": TwoHeads()}),
        optimizers=Optimizers((torch.optim.Adam, {"lr": o.lr, "weight_decay": o.weight_decay})),
        hook_kwargs={"repeat": o.num_k, "x_weighter": SumWeighter(), "y_weighter": SumWeighter()},
    )

    def predict(x):  # as aa's MCD: the sum of both classifiers' probabilities
        c1, c2 = adapter.models["C"](adapter.models["G"](x))
        return c1.softmax(dim=1) + c2.softmax(dim=1)

    return run_peer(adapter, ctx, data, predict)


def run_peer(adapter, ctx, data, predict):
    def step(batch):
        x_s, y_s, x_t = batch.x_s, batch.y_s, batch.x_t
        domains = {"src_domain": torch.zeros(len(x_s)), "target_domain": torch.ones(len(x_t))}
        adapter.training_step({"src_imgs": x_s, "src_labels": y_s, "target_imgs": x_t, **domains})
        for scheduler in adapter.lr_schedulers.values():
            scheduler.step()

    def evaluate(x):
        for model in adapter.models.values():
            model.eval()
        return predict(x)

    for model in adapter.models.values():
        model.train()
    batch_size = ctx.config.train.batch_size
    pairs = zip(data.loaders(data.source, batch_size), data.loaders(data.target, batch_size))  # as aa's UDAAlgorithm.batches
    return Trainer(step, (UDABatch(x_s, y_s, x_t) for (x_s, y_s), x_t in pairs), evaluate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--algorithms", default="dann,mcd")
    parser.add_argument("--turn", type=int, default=100, help="steps a library takes before the other's turn")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (reused when run again)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-peer-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    algorithms = args.algorithms.split(",")
    libraries = ("aa", "pytorch-adapt")
    print(f"default task, seeds {args.seeds}, {args.steps} steps, turns of {args.turn}")
    print("| algorithm | seed | library | test (dev) accuracy | steps/s |")
    print("|---|---|---|---|---|")
    runs = {}
    for seed in seeds:
        ctx, source, target, loaders = build(root / f"seed{seed}", seed)
        for name in algorithms:
            peer = {"dann": peer_dann, "mcd": peer_mcd}[name]
            trainers = []
            for side in (partial(aa_side, name=name), peer):
                torch.manual_seed(seed)  # each library's new layers start as they would alone
                trainers.append(side(ctx, UDAData(source, target, loaders), args.steps))
            race(trainers, args.steps, args.turn)
            for library, trainer in zip(libraries, trainers):
                test, dev = accuracy(trainer.predict, ctx, target)
                runs[name, library, seed] = (test, trainer)
                print(f"| {name} | {seed} | {library} | {test:.4f} ({dev:.4f}) | {trainer.timed / trainer.seconds:.1f} |", flush=True)
    print("| algorithm | library | mean test accuracy | steps/s |")
    print("|---|---|---|---|")
    summary = {}
    for name in algorithms:
        for library in libraries:
            rows = [runs[name, library, seed] for seed in seeds]
            mean = sum(test for test, _ in rows) / len(rows)
            speed = sum(trainer.timed for _, trainer in rows) / sum(trainer.seconds for _, trainer in rows)
            summary[name, library] = mean, speed
            print(f"| {name} | {library} | {mean:.4f} | {speed:.1f} |")
    for name in algorithms:
        (a_acc, a_speed), (p_acc, p_speed) = summary[name, "aa"], summary[name, "pytorch-adapt"]
        print(f"{name}: aa {a_acc - p_acc:+.4f} mean accuracy, {a_speed / p_speed:.2f}x the steps/s")


if __name__ == "__main__":
    main()
