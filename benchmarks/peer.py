"""aa's DANN and MCD against pytorch-adapt's, FixMatch, FreeMatch, SoftMatch and MixMatch against USB's, and bare torch loops.

    bash benchmarks/peer_venvs.sh        # the peers, each in its own environment over aa's
    /tmp/aa-peer-adapt/bin/python benchmarks/peer.py --algorithms dann,mcd
    /tmp/aa-peer-usb/bin/python benchmarks/peer.py --algorithms fixmatch,freematch,softmatch,mixmatch
    options: [--steps 300] [--seeds 0,1,2] [--turn 50] [--keep DIR]

Every library of a configuration trains the same network (aa's), from the same weights, on the
same batches (aa's loaders, drawn once per library with the same seed), with the same objective,
optimizer, schedule and batch sizes:

* UDA: one ``aa run --uda dann --ssl none`` per seed gives the source and the source-only weights.
  DANN is ``CE + trade_off * (BCE_s + BCE_t) / 2`` with trade-off 1, SGD (lr 0.01, Nesterov 0.9,
  weight decay 1e-3, ``(1 + 10p)^-0.75``) and on every side the reversal weight ramped
  ``2 / (1 + exp(-10p)) - 1`` (pytorch-adapt's ``GradientReversal`` set each step; its default
  is a constant 1). Two layouts, labelled: ``concatenated`` (aa's: source and target through the
  extractor in one batch, so its batch norm sees both) and ``per-domain`` (pytorch-adapt's: one
  pass per domain; aa's side is DANN with that ``train_step``, defined here). The discriminator's
  batch norm takes each domain apart in both. MCD: the paper's sums ``CE_1 + CE_2`` and
  ``CE_1 + CE_2 - d``; Adam (lr 2e-4, weight decay 5e-4) for G and C, four G updates per step.
  pytorch-adapt averages an update's losses unless told otherwise (``MeanWeighter``); its
  ``SumWeighter`` with the weights above gives the objective aa optimises.
* SSL: the same run's adapted model is split as the refine
  stage splits it (``split_target``), and every library refines a copy of it on the confident
  part (pseudo-labelled, weak views) and the unlabelled part (FixMatch: every target image, weak
  and strong views, mu = 7; MixMatch: the unconfident ones, two weak views), batch 32. FixMatch:
  SGD lr 0.03, Nesterov 0.9, weight decay 5e-4 on weights only, cosine 7/16, threshold 0.95.
  MixMatch: AdamW lr 0.002, weight decay 0.02 on weights only, constant rate, T 0.5, alpha 0.75,
  lambda_u 75 ramped over 1/64 of training. All predict with an EMA of decay 0.999 warmed up as
  aa's default (``ema_warmup``) does: USB's decay is set to it before each step.
  USB (``benchmarks/peer_usb.py``) runs its own ``train_step`` and update hooks; its MixMatch
  passes the mixed batch in three chunks, batch norm learning from the first only, and makes one
  extra forward pass of the labelled batch for features, where aa makes one pass.
* bare: the same maths written straight onto torch (``benchmarks/bare_loops.py``).

aa's speed comes from how it runs the same computation: fused optimizer kernels, channels-last
convolution weights, and in MCD no weight gradients for the frozen classifiers in step C, step
B's target features reused by step C's first update, and on the CPU dropout masks drawn from
uniform numbers (``aa_core.models.dropout``) where pytorch-adapt's classifiers keep torch's own
``nn.Dropout``.

The libraries of a configuration train side by side in one process, taking turns of ``--turn``
steps, so that all see the same machine (a shared 2-core machine's speed drifts from one minute
to the next). Each turn is timed, data loading included; the first 20 steps warm up untimed.

It prints test-half accuracy (dev half in parentheses) and training steps per second per seed,
then per configuration the mean accuracy over the seeds and the steps per second over all turns,
and aa's lead over each other library. The aims: aa at least as accurate as the peer, 1.3x its
steps per second, and within 5% of the bare loop's.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bare_loops
import torch
from torch import nn

from aa_core.contracts import UDABatch, UDAData

SSL = ("fixmatch", "freematch", "softmatch", "mixmatch")


def build(root: Path, seed: int, uda: str = "dann"):
    """The run folder (source-only and ``uda``'s adapted weights), its stage context, and the target's plain views."""
    from aa_core.config import load_config
    from aa_core.context import StageContext
    from aa_core.data.views import Views
    from aa_core.pipeline import read_config
    from aa_core.run_folder import RunFolder

    out = root / f"uda-{uda}"
    if not (out / "config.yaml").exists() or not RunFolder(out).weights("adapt" if uda != "none" else "source_only").exists():
        cmd = [sys.executable, "-m", "aa_cli.main", "run", "--uda", uda, "--ssl", "none", "--seed", str(seed), "--out", str(out)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = RunFolder(out)
    ctx = StageContext(load_config(base=read_config(folder)), folder)
    return ctx, Views(ctx.prepared(ctx.target.paths), [ctx.input_format.plain()])


def accuracy(predict, ctx, target) -> tuple[float, float]:
    """Test-half and dev-half accuracy of ``predict`` (images -> logits); labels only score it."""
    with torch.no_grad():
        x = torch.stack([target[i] for i in range(len(target))])
        predicted = predict(x).argmax(dim=1)
    labels = torch.tensor(ctx.target.labels)
    test, dev = torch.tensor(ctx.target.test), torch.tensor(sorted(ctx.target.dev))
    return [(predicted[i] == labels[i]).float().mean().item() for i in (test, dev)]  # type: ignore[return-value]


class Trainer:
    """One library's training: ``step(batch, k)`` over its own ``batches``, timed turn by turn.

    Each keeps its own stream of torch's global random numbers (dropout and MixUp draw from it),
    so that what it learns does not depend on the other libraries' turns.
    """

    def __init__(self, step, batches, predict):
        self.step, self.batches, self.predict = step, iter(batches), predict
        self.done, self.timed, self.seconds = 0, 0, 0.0
        self.random = torch.get_rng_state()

    def train(self, steps: int, timed: bool = True) -> None:
        torch.set_rng_state(self.random)
        started = time.perf_counter()
        for k, batch in zip(range(self.done, self.done + steps), self.batches):
            self.step(batch, k)
        if timed:
            self.seconds += time.perf_counter() - started
            self.timed += steps
        self.done += steps
        self.random = torch.get_rng_state()

    def evaluate(self, x):
        return self.predict(x)


def race(trainers: list[Trainer], steps: int, turn: int) -> None:
    """``steps`` steps each, in turns; the first 20 warm up and are not timed."""
    for trainer in trainers:
        trainer.train(20, timed=False)
    while trainers[0].done < steps:
        for trainer in trainers:
            trainer.train(min(turn, steps - trainer.done))


def context(ctx, steps: int):
    from aa_core.api import TrainingContext

    return TrainingContext(ctx.accelerator, len(ctx.categories), steps, ctx.config.train.batch_size, False, ctx.config.seed)


def options(ctx, kind: str, name: str):
    """aa's algorithm class and options, as its stage loads them (the digits preset included)."""
    from aa_core.config import load_config
    from aa_core.context import StageContext

    return StageContext(load_config(flags={kind: name}), ctx.folder).implementation(kind)


def source_only(ctx):
    from aa_core.trained import trained_model

    return trained_model(ctx, "source_only")


def aa_trainer(algorithm, batches):
    def predict(x):
        return algorithm.predictor().eval()(x)

    return Trainer(algorithm.train_step, batches, predict)


def per_domain_dann():
    """aa's DANN with one extractor pass per domain (pytorch-adapt's layout) instead of one over both."""
    import torch.nn.functional as F

    from aa_core.api import progress, sigmoid_ramp
    from aa_uda.dann import DANN

    class PerDomainDANN(DANN):
        def train_step(self, batch: UDABatch, step: int) -> dict[str, float]:
            coefficient = sigmoid_ramp(progress(step, self.context.total_steps))
            logits_s, f_s = self.classifier(batch.x_s, with_features=True)
            _, f_t = self.classifier(batch.x_t, with_features=True)
            classification = F.cross_entropy(logits_s, batch.y_s)
            loss = classification + self.options.trade_off * self.adversarial(f_s, f_t, coefficient)
            self.update(loss)
            return {"loss": loss.item()}

    return PerDomainDANN


def uda_batches(ctx, data):
    batch_size = ctx.config.train.batch_size
    pairs = zip(data.loaders(data.source, batch_size), data.loaders(data.target, batch_size))  # as aa's UDAAlgorithm.batches
    return (UDABatch(x_s, y_s, x_t) for (x_s, y_s), x_t in pairs)


def uda_sides(ctx, data, steps: int, name: str, layout: str | None) -> dict:
    """library -> Trainer for one UDA configuration."""
    cls, o = options(ctx, "uda", name)
    if layout == "per-domain":
        cls = per_domain_dann()
    sides = {}
    algorithm = cls(o, cls.build_network(source_only(ctx), o), context(ctx, steps))
    sides["aa"] = aa_trainer(algorithm, algorithm.batches(data))
    if name == "mcd":
        sides["pytorch-adapt"] = peer_mcd(ctx, data, o)
    if name == "dann":
        if layout == "per-domain":
            sides["pytorch-adapt"] = peer_dann(ctx, data, o, steps)
        step, net = bare_loops.dann(source_only(ctx), o, steps, per_domain=layout == "per-domain")
        sides["bare"] = Trainer(step, uda_batches(ctx, data), lambda x: net.eval()(x))
    return sides


def peer_dann(ctx, data, o, steps: int):
    from pytorch_adapt.adapters import DANN
    from pytorch_adapt.containers import LRSchedulers, Models, Optimizers
    from pytorch_adapt.hooks import FeaturesForDomainLossHook, GradientReversalHook
    from pytorch_adapt.weighters import SumWeighter

    from aa_core.api import inverse_decay, progress, sigmoid_ramp
    from aa_uda.domain_discriminator import DomainDiscriminator

    classifier = source_only(ctx)
    g = nn.Sequential(classifier.backbone, classifier.bottleneck)
    d = nn.Sequential(DomainDiscriminator(classifier.features_dim, o.hidden), nn.Flatten(0))
    reversal = GradientReversalHook(apply_to=FeaturesForDomainLossHook().out_keys)  # DANNHook's default, kept to set its weight
    sgd = (torch.optim.SGD, {"lr": o.lr, "momentum": o.momentum, "weight_decay": o.weight_decay, "nesterov": o.nesterov})
    schedule = (torch.optim.lr_scheduler.LambdaLR, {"lr_lambda": lambda s: inverse_decay(progress(s, steps))})
    adapter = DANN(
        models=Models({"G": g, "C": classifier.head, "D": d}),
        optimizers=Optimizers(sgd),
        lr_schedulers=LRSchedulers(schedule),
        hook_kwargs={
            "gradient_reversal": reversal,
            "weighter": SumWeighter(weights={"src_domain_loss": o.trade_off / 2, "target_domain_loss": o.trade_off / 2}),
        },
    )

    def ramp(k: int) -> None:  # aa's reversal schedule
        reversal.fn.update_weight(sigmoid_ramp(progress(k, steps)))

    return run_peer(adapter, ctx, data, lambda x: adapter.inference(x)["logits"], ramp)


def peer_mcd(ctx, data, o):
    from pytorch_adapt.adapters import MCD
    from pytorch_adapt.containers import Models, Optimizers
    from pytorch_adapt.weighters import SumWeighter

    from aa_uda.mcd import MCDClassifier

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


def run_peer(adapter, ctx, data, predict, before_step=None):
    def step(batch, k: int):
        if before_step is not None:
            before_step(k)
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
    return Trainer(step, uda_batches(ctx, data), evaluate)


def ssl_sides(ctx, steps: int, name: str) -> dict:
    """library -> Trainer for one SSL configuration: the refine stage's split and batches of the adapted model."""
    from peer_usb import usb_algorithm
    from torch.utils.data import Subset

    from aa_core.data.loaders import Loaders
    from aa_core.data.views import Views
    from aa_core.models.memory_format import channels_last
    from aa_core.stages.refine import split_target, ssl_batches
    from aa_core.trained import trained_model

    cls, o = options(ctx, "ssl", name)
    fmt, seed = ctx.input_format, ctx.config.seed
    adapted = trained_model(ctx, "adapt").eval()
    images = ctx.prepared(ctx.target.paths)
    split, _ = split_target(ctx, adapted, images)
    c = context(ctx, steps)
    feed = cls.feed(o, c)
    unlabelled_set = torch.arange(len(images)) if feed.unlabelled == "all" else split.unconfident
    labels = split.pseudo_labels.tolist()
    labelled = Views(Subset(images, split.confident.tolist()), [fmt.view(v) for v in feed.labelled_views], labels=labels)
    unlabelled = Views(Subset(images, unlabelled_set.tolist()), [fmt.view(v) for v in feed.unlabelled_views])

    def batches():
        loaders = Loaders(ctx.accelerator, seed)
        return ssl_batches(loaders(labelled, feed.labelled_batch_size), loaders(unlabelled, feed.unlabelled_batch_size))

    algorithm = cls(o, cls.build_network(channels_last(copy.deepcopy(adapted)).train(), o), c)
    lr = algorithm.update.optimizers[0].param_groups[0]["lr"]  # the default aa chose (no pretrained backbone here)
    sides = {"aa": aa_trainer(algorithm, batches())}
    step, predict = usb_algorithm(name, copy.deepcopy(adapted).train(), steps, ctx.config.train.batch_size, o, lr)
    sides["USB"] = Trainer(step, batches(), predict)
    if name == "fixmatch":
        step, net = bare_loops.fixmatch(copy.deepcopy(adapted), o, steps, lr)
    elif name in ("freematch", "softmatch"):
        step, net = bare_loops.gated(copy.deepcopy(adapted), o, steps, lr, len(ctx.categories), name)
    else:
        step, net = bare_loops.mixmatch(copy.deepcopy(adapted), o, steps, lr, len(ctx.categories), seed)
    sides["bare"] = Trainer(step, batches(), lambda x: net.eval()(x))
    return sides


def configurations(algorithms: list[str]) -> list[tuple[str, str | None]]:
    out = []
    for name in algorithms:
        out += [(name, "concatenated"), (name, "per-domain")] if name == "dann" else [(name, None)]
    return out


def main() -> None:
    from aa_core.data.loaders import Loaders

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--algorithms", default="dann,mcd")
    parser.add_argument("--turn", type=int, default=50, help="steps a library takes before the next one's turn")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (reused when run again)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-peer-"))
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = configurations(args.algorithms.split(","))
    print(f"default task, seeds {args.seeds}, {args.steps} steps, turns of {args.turn}, {torch.get_num_threads()} threads")
    print("| algorithm | layout | seed | library | test (dev) accuracy | steps/s |")
    print("|---|---|---|---|---|---|")
    runs: dict = {}
    for seed in seeds:
        for name, layout in configs:
            torch.manual_seed(seed)  # each library's new layers start as they would alone
            if name in SSL:
                ctx, target = build(root / f"seed{seed}", seed, "dann")
                sides = ssl_sides(ctx, args.steps, name)
            else:
                ctx, target = build(root / f"seed{seed}", seed, "dann")  # its source-only weights
                source = ctx.prepared(ctx.source.paths)
                from aa_core.data.views import Views

                data = UDAData(Views(source, [ctx.input_format.plain()], labels=ctx.source.labels), target, Loaders(ctx.accelerator, seed))
                sides = uda_sides(ctx, data, args.steps, name, layout)
            race(list(sides.values()), args.steps, args.turn)
            for library, trainer in sides.items():
                test, dev = accuracy(trainer.evaluate, ctx, target)
                runs[name, layout, library, seed] = (test, trainer)
                speed = trainer.timed / trainer.seconds
                print(f"| {name} | {layout or '-'} | {seed} | {library} | {test:.4f} ({dev:.4f}) | {speed:.1f} |", flush=True)
    print()
    print("| algorithm | layout | library | mean test accuracy | steps/s | aa: accuracy, speed |")
    print("|---|---|---|---|---|---|")
    for name, layout in configs:
        libraries = [lib for (n, lay, lib, s) in runs if (n, lay, s) == (name, layout, seeds[0])]
        summary = {}
        for library in libraries:
            rows = [runs[name, layout, library, seed] for seed in seeds]
            mean = sum(test for test, _ in rows) / len(rows)
            speed = sum(t.timed for _, t in rows) / sum(t.seconds for _, t in rows)
            summary[library] = mean, speed
        for library in libraries:
            (acc, speed), (a_acc, a_speed) = summary[library], summary["aa"]
            lead = "-" if library == "aa" else f"{a_acc - acc:+.4f}, {a_speed / speed:.2f}x"
            print(f"| {name} | {layout or '-'} | {library} | {acc:.4f} | {speed:.1f} | {lead} |")


if __name__ == "__main__":
    main()
