"""Real size: does time grow at most linearly with the data set, and memory not at all?

    python benchmarks/scale.py [--sizes 1000,10000,50000] [--root DIR] [--workers 2]

Builds labelled folders of 224-px JPEGs (10 classes; made here once, kept under ``--root``),
then, for each size, runs every whole-set computation of a run on its own, each in a fresh
process, and measures its wall time and the peak resident memory of its whole process tree
(the process and its data-loader workers: their proportional set sizes summed, so that pages a
forked worker shares with its parent count once; sampled every 50 ms from /proc):

* ``scan``: opening the folder (every file checked to be an image);
* ``prepare``: the prepared images (``Prepared``: held in memory only within ``data.cache_mb``)
  and one plain pass over them through the loader workers;
* ``split``: the confident split's scores (a plain and ``refine.views`` weak passes);
* ``select``: a checkpoint's predictions and the ``snd`` criterion (computed in blocks);
* ``pairs``: CDTrans' target pseudo-labels and two-way centre-aware pairs (the folder as both
  source and target), through ``CDTrans.label_and_pair`` itself;
* ``evaluate``: the evaluation's pass and ``predictions.csv``;
* ``train``: a few DANN steps of a real timm ResNet-18 at 224 px, batch 16, the loaders' workers
  decoding and augmenting (weak views).

On 2 cores a 224-px pass of even a tiny CNN costs ~20 ms an image, so the whole-set passes use
a probe whose cost per image is negligible (average pooling to 28x28, then linear layers): what is
measured is the memory path (decoding, workers, blocks), which is the real one. Batch sizes and
the model are the same at every size. Aims: peak memory at 50k within 1.2x of that at 1k; time
per image at 50k within 1.2x of that at 10k.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

CLASSES = [f"class_{k}" for k in range(10)]
STAGES = ("scan", "prepare", "split", "select", "pairs", "evaluate", "train")


def build_folder(root: Path, size: int) -> Path:
    """``size`` 224-px JPEGs in 10 class folders: smooth random colour fields with a class tint."""
    import numpy as np
    from PIL import Image

    folder = root / f"jpeg-{size}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    rng = np.random.default_rng(size)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for i in range(size):
        k = i % len(CLASSES)
        small = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8) // 2 + np.uint8(12 * k)
        image = Image.fromarray(small).resize((224, 224), Image.BILINEAR)
        image.save(folder / CLASSES[k] / f"{i:06d}.jpg", quality=90)
    done.touch()
    return folder


def tree_memory(pid: int) -> int:
    """Memory of ``pid`` and all its descendants: the sum of their proportional set sizes (PSS), so
    that pages forked workers share with their parent count once."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def measure(stage: str, folder: Path, workers: int) -> dict:
    """Run ``stage`` in a fresh process; its seconds (as it timed itself) and its tree's peak RSS."""
    cmd = [sys.executable, __file__, "--stage", stage, "--folder", str(folder), "--workers", str(workers)]
    log = open(folder.parent / f"{folder.name}-{stage}.log", "w")  # progress bars and errors
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_memory(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    stop.set()
    sampler.join()
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed on {folder}: see {log.name}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak_mb": peak[0] / 2**20}


# --- one stage, in its own process -------------------------------------------------------------


def probe(num_classes: int, width: int = 384):
    """A classifier whose cost per 224-px image is negligible: pool to 28x28, then linear layers
    (``width`` pooled features, DeiT-S's, for CDTrans' pairing)."""
    from torch import nn

    from aa_core.models.classifier import ImageClassifier

    class Backbone(nn.Sequential):
        num_features = width

    backbone = Backbone(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(3 * 28 * 28, width))
    return ImageClassifier(backbone, num_classes, 256).eval().requires_grad_(False)


def run_stage(stage: str, folder: Path, workers: int) -> dict:
    import torch

    from aa_core.config import load_config
    from aa_core.context import StageContext
    from aa_core.run_folder import RunFolder

    sets = [f"task.categories=[{', '.join(CLASSES)}]", "data.image_size=224", "data.channels=3", f"data.num_workers={workers}"]
    config = load_config(flags={"target": str(folder), "source": str(folder)}, sets=sets)
    ctx = StageContext(config, RunFolder(folder.parent / f"run-{folder.name}"))
    ctx.folder.create()
    torch.manual_seed(0)
    started = time.perf_counter()
    target = ctx.target  # the scan
    if stage == "scan":
        return {"seconds": time.perf_counter() - started, "images": len(target.paths)}
    started = time.perf_counter()
    images = ctx.prepared(target.paths)
    model = probe(len(CLASSES))
    fmt = ctx.input_format
    from aa_core.data.views import Views
    from aa_core.training.predict import predict_probabilities

    def predict(views) -> torch.Tensor:
        return predict_probabilities(model, views, ctx.accelerator, num_workers=workers)

    if stage == "prepare":
        predict(Views(images, [fmt.plain()]))
    elif stage == "split":
        from aa_core.stages.refine import split_target

        split_target(ctx, model, images)
    elif stage == "select":
        from aa_core.selection import score

        score(predict(Views(images, [fmt.plain()])), "snd")
    elif stage == "pairs":
        from types import SimpleNamespace

        from aa_core.contracts import UDAData
        from aa_core.data.loaders import Loaders
        from aa_uda.cdtrans import CDTrans

        plain = [fmt.plain()]
        data = UDAData(Views(images, plain, labels=target.labels), Views(images, plain), Loaders(ctx.accelerator, 0, workers))
        network = torch.nn.Module()
        network.classifier = model  # what label_and_pair reads: the network's classifier
        context = SimpleNamespace(accelerator=ctx.accelerator, batch_size=64)
        CDTrans.label_and_pair(SimpleNamespace(context=context, network=network, options=CDTrans.Options()), data)
    elif stage == "evaluate":
        probabilities = predict(Views(images, [fmt.plain()]))
        confidence, predicted = probabilities.max(dim=1)
        with open(ctx.folder.predictions, "w") as f:
            for name, k, p in zip(target.names, predicted.tolist(), confidence.tolist()):
                f.write(f"{name},{CLASSES[k]},{p:.4f}\n")
    elif stage == "train":
        return train_steps(ctx, images, workers)
    return {"seconds": time.perf_counter() - started, "images": len(images)}


def train_steps(ctx, images, workers: int, steps: int = 4, batch: int = 16) -> dict:
    """A few DANN steps on ResNet-18 at 224 px; the first one (warming up the workers) is not timed."""
    from aa_core.contracts import TrainingContext, UDAData
    from aa_core.data.loaders import Loaders
    from aa_core.data.views import Views
    from aa_core.models.classifier import build_classifier
    from aa_uda.dann import DANN

    ctx.config.model.backbone = "resnet18"
    classifier = build_classifier(ctx.config.model, len(CLASSES), 3, pretrained=False)
    context = TrainingContext(ctx.accelerator, len(CLASSES), steps, batch, False, 0)
    algorithm = DANN(DANN.Options(), classifier, context)
    weak = ctx.input_format.weak()
    data = UDAData(Views(images, [weak], labels=ctx.target.labels), Views(images, [weak]), Loaders(ctx.accelerator, 0, workers))
    batches = algorithm.batches(data)
    algorithm.train_step(next(batches), 0)
    started = time.perf_counter()
    for step in range(1, steps):
        algorithm.train_step(next(batches), step)
    return {"seconds": (time.perf_counter() - started) / (steps - 1), "images": len(images), "per": "step"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--root", default="/tmp/aa-scale")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("AA_CACHE", str(Path(args.root) / "cache"))
    if args.stage:
        print(json.dumps(run_stage(args.stage, Path(args.folder), args.workers)))
        return
    sizes, stages = [int(s) for s in args.sizes.split(",")], args.stages.split(",")
    print(f"{args.workers} loader workers; whole-set passes with a probe model; training: DANN, ResNet-18, batch 16")
    print("| stage | " + " | ".join(f"{n:,} images: s (peak MB)" for n in sizes) + " | ms/image at each size |")
    print("|---|" + "---|" * (len(sizes) + 1))
    results: dict[tuple[str, int], dict] = {}
    for n in sizes:
        started = time.perf_counter()
        build_folder(Path(args.root), n)
        print(f"(folder of {n:,} images ready in {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    for stage in stages:
        cells, per = [], []
        for n in sizes:
            r = results[stage, n] = measure(stage, build_folder(Path(args.root), n), args.workers)
            cells.append(f"{r['seconds']:.1f} ({r['peak_mb']:.0f})")
            per.append("-" if r.get("per") == "step" else f"{1000 * r['seconds'] / n:.2f}")
        print(f"| {stage}{' (s/step)' if results[stage, sizes[0]].get('per') == 'step' else ''} | " + " | ".join(cells)
              + f" | {' / '.join(per)} |", flush=True)  # fmt: skip
    if len(sizes) >= 2:
        small, middle, large = sizes[0], sizes[-2], sizes[-1]
        print(f"\ngrowth, {middle:,} -> {large:,} images (time per image) and {small:,} -> {large:,} (peak memory):")
        for stage in stages:
            a, b, s = results[stage, middle], results[stage, large], results[stage, small]
            time_ratio = (b["seconds"] / large) / (a["seconds"] / middle) if b.get("per") != "step" else b["seconds"] / a["seconds"]
            print(f"  {stage:<9} time x{time_ratio:.2f}   peak memory x{b['peak_mb'] / s['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
