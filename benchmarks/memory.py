"""Peak training memory of every UDA and SSL algorithm at 224 px, with the presets' backbones and batches.

    python benchmarks/memory.py [--device cuda] [--precisions fp32,bf16] [--only dann,fixmatch]

For each algorithm: a randomly initialised timm backbone as ``examples/datasets`` names it
(ResNet-50; DeiT-S for CDTrans), 65 classes (Office-Home), the presets' batch of 32, two training
steps through the algorithm's own ``train_step``, the peak of memory held by tensors during them.
On a GPU that is ``torch.cuda.max_memory_allocated`` (bf16: accelerate's autocast, weights in
fp32). Elsewhere it is the CPU profiler's peak of allocated tensor memory for the same shapes,
stated as such (slow: a ResNet-50 step at batch 32 takes tens of seconds on 2 cores, and FixMatch
at mu = 7 needs more memory than this machine has, so it is skipped there by ``--max-images``).
"""

from __future__ import annotations

import argparse
import math
import time

import torch

ROWS = [  # (kind, name, backbone, options): the presets' choices, and FixMatch's unlabelled ratios beside them
    ("uda", "dann", "resnet50", {}),
    ("uda", "mcd", "resnet50", {"optimizer": "sgd", "lr": 0.001, "hidden": 1024, "trade_off": 30.0, "entropy_weight": 0.01}),
    ("uda", "symnets", "resnet50", {}),
    ("uda", "cdtrans", "deit_small_patch16_224", {}),
    ("ssl", "fixmatch", "resnet50", {"mu": 7}),
    ("ssl", "fixmatch", "resnet50", {"mu": 2}),
    ("ssl", "fixmatch", "resnet50", {"mu": 1}),
    ("ssl", "mixmatch", "resnet50", {}),
]
CLASSES, BATCH, SIZE = 65, 32, 224


def algorithm_class(kind: str, name: str):
    import importlib

    module, cls = {
        "dann": ("aa_uda.dann", "DANN"), "mcd": ("aa_uda.mcd", "MCD"), "symnets": ("aa_uda.symnets", "SymNets"),
        "cdtrans": ("aa_uda.cdtrans", "CDTrans"), "fixmatch": ("aa_ssl.fixmatch", "FixMatch"), "mixmatch": ("aa_ssl.mixmatch", "MixMatch"),
    }[name]  # fmt: skip
    return getattr(importlib.import_module(module), cls)


def batch_for(kind: str, name: str, cls, options, context, device):
    x = lambda n: torch.randn(n, 3, SIZE, SIZE, device=device)  # noqa: E731
    y = lambda n: torch.randint(0, CLASSES, (n,), device=device)  # noqa: E731
    if kind == "uda":
        if name == "cdtrans":
            from aa_uda.cdtrans import PairBatch

            return PairBatch(x(BATCH), y(BATCH), x(BATCH), y(BATCH))
        from aa_core.api import UDABatch

        return UDABatch(x(BATCH), y(BATCH), x(BATCH))
    from aa_core.api import SSLBatch

    feed = cls.feed(options, context)
    return SSLBatch(
        x_l=tuple(x(feed.labelled_batch_size) for _ in feed.labelled_views),
        y_l=y(feed.labelled_batch_size),
        x_u=tuple(x(feed.unlabelled_batch_size) for _ in feed.unlabelled_views),
    )


def images_per_step(kind: str, name: str, options: dict) -> int:
    if kind == "uda":
        return 2 * BATCH
    if name == "fixmatch":
        return BATCH * (1 + 2 * options.get("mu", 7))
    return BATCH * (1 + 2)  # mixmatch: K = 2 guesses of B unlabelled images, B labelled


def measure(kind: str, name: str, backbone: str, options: dict, precision: str, device: str, compile: bool = False) -> tuple[float, float]:
    """(peak GiB, seconds per step) of two training steps (after one more to warm up, with ``compile``)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from aa_core.api import TrainingContext
    from aa_core.config import ModelConfig
    from aa_core.models.classifier import build_classifier

    AcceleratorState._reset_state(True)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision="bf16" if precision == "bf16" else "no")
    cls = algorithm_class(kind, name)
    opts = cls.Options(**options)
    torch.manual_seed(0)
    with torch.device(accelerator.device):
        classifier = build_classifier(ModelConfig(backbone=backbone), CLASSES, 3, pretrained=False)
    network = cls.build_network(classifier, opts).to(accelerator.device)
    if compile:
        classifier.backbone.compile()  # in place: the algorithm's own modules keep calling it
    context = TrainingContext(accelerator, CLASSES, total_steps=10, batch_size=BATCH, pretrained_backbone=True, seed=0)
    algorithm = cls(opts, network, context)
    batch = batch_for(kind, name, cls, opts, context, accelerator.device)
    if compile:
        algorithm.train_step(batch, 0)  # compiles
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        for step in range(2):
            algorithm.train_step(batch, step)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30, (time.perf_counter() - started) / 2
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for step in range(2):
            algorithm.train_step(batch, step)
    seconds = (time.perf_counter() - started) / 2
    held, peak = 0, 0  # replay in order what each op allocated itself (not its children) and each free: the most held at once
    for event in sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak / 2**30, seconds


def main() -> None:
    global BATCH, SIZE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--only", default="", help="algorithm names, comma-separated")
    parser.add_argument("--max-images", type=int, default=0, help="skip rows with more images per step (0: none)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    parser.add_argument("--batch", type=int, default=BATCH, help="labelled batch (the presets': 32)")
    parser.add_argument("--size", type=int, default=SIZE, help="pixels (the presets': 224)")
    args = parser.parse_args()
    BATCH, SIZE = args.batch, args.size
    what = "CUDA max_memory_allocated" if args.device == "cuda" else "CPU profiler's peak of allocated tensors (same shapes)"
    name_of = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    compiled = ", backbone torch.compile'd" if args.compile else ""
    print(f"peak training memory, GiB ({what}, {name_of}{compiled}); 224 px, batch {BATCH}, {CLASSES} classes; and seconds per step")
    precisions = args.precisions.split(",")
    columns = " | ".join(f"{p} GiB (s/step)" for p in precisions)
    print(f"| algorithm | backbone | options | images/step | {columns} | fits 24 GB in bf16 |")
    print("|---|---|---|---|" + "---|" * len(precisions) + "---|")
    for kind, name, backbone, options in ROWS:
        if args.only and name not in args.only.split(","):
            continue
        images = images_per_step(kind, name, options)
        if args.max_images and images > args.max_images:
            continue
        cells, bf16 = [], math.nan
        for precision in precisions:
            try:
                gib, seconds = measure(kind, name, backbone, options, precision, args.device, args.compile)
                cells.append(f"{gib:.1f} ({seconds:.2f})")
                bf16 = gib if precision == "bf16" else bf16
            except torch.OutOfMemoryError:
                cells.append("out of memory")
            if args.device == "cuda":
                torch.cuda.empty_cache()
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        fits = "-" if math.isnan(bf16) else ("yes" if bf16 < 22 else "no")  # ~2 GB for the context and the allocator
        print(f"| {name} | {backbone} | {shown} | {images} | " + " | ".join(cells) + f" | {fits} |", flush=True)


if __name__ == "__main__":
    main()
