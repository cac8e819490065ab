"""Does aa's data loading keep up at 224 px? Images per second of its views against a bare torchvision loop.

    python benchmarks/loading.py [--images 2000] [--workers 0,1,2] [--batch 64] [--root DIR]

On one folder of 224-px JPEGs (``benchmarks/scale.py`` builds it), for each of the plain, weak and
strong views and each number of loader workers: aa's path (``Prepared`` images, ``Views``, one pass
of ``Loaders.once``; ``data.cache_mb`` at its default, so a set this small is decoded once into
memory, and with ``cache_mb=0``, decoded at each pass as a large set is) against torchvision's
``ImageFolder`` with the equivalent transforms in a plain ``DataLoader``. Each figure is the
construction (scan, cache) plus one pass, the better of two tries, in images per second.
Aim: aa >= 0.95x the bare loop at every worker count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from scale import CLASSES, build_folder  # noqa: E402


def aa_pass(folder: Path, view: str, workers: int, batch: int, cache_mb: int) -> float:
    from accelerate import Accelerator

    from aa_core.config import load_config
    from aa_core.context import StageContext
    from aa_core.data.loaders import Loaders
    from aa_core.data.views import Views
    from aa_core.run_folder import RunFolder

    sets = [f"task.categories=[{', '.join(CLASSES)}]", "data.image_size=224", "data.channels=3", "data.flip=true",
            f"data.num_workers={workers}", f"data.cache_mb={cache_mb}"]  # fmt: skip
    ctx = StageContext(load_config(flags={"target": str(folder), "source": str(folder)}, sets=sets), RunFolder(folder.parent / "run"))
    started = time.perf_counter()
    images = Views(ctx.prepared(ctx.target.paths), [ctx.input_format.view(view)])
    n = sum(len(x) for x in Loaders(Accelerator(cpu=True), 0, workers).once(images, batch))
    return n / (time.perf_counter() - started)


def bare_pass(folder: Path, view: str, workers: int, batch: int) -> float:
    from timm.data.auto_augment import RandAugment, rand_augment_ops
    from timm.data.random_erasing import RandomErasing
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    scale = [T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
    weak = [T.RandomHorizontalFlip(), T.RandomAffine(0, translate=(0.125, 0.125), fill=255)]
    names = ["AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "PosterizeOriginal", "Rotate", "Sharpness", "ShearX",
             "ShearY", "Solarize", "TranslateXRel", "TranslateYRel"]  # FixMatch's, at magnitudes drawn uniformly  # fmt: skip
    hparams = {"translate_pct": 0.3, "img_mean": (255, 255, 255), "magnitude_std": float("inf")}
    strong = [RandAugment(rand_augment_ops(magnitude=10, prob=1.0, hparams=hparams, transforms=names), num_layers=2)]
    cutout = [RandomErasing(probability=1.0, min_area=0.02, max_area=0.25, min_aspect=1.0, max_aspect=1.0, mode="const", device="cpu")]
    transform = {"plain": scale, "weak": weak + scale, "strong": weak + strong + scale + cutout}[view]
    started = time.perf_counter()
    data = ImageFolder(str(folder), transform=T.Compose(transform))
    n = sum(len(x) for x, _ in DataLoader(data, batch_size=batch, num_workers=workers))
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--root", default="/tmp/aa-scale")
    args = parser.parse_args()
    folder = build_folder(Path(args.root), args.images)
    torch.set_num_threads(1)  # as a loader worker has: the comparison is of the loading, not of the BLAS
    print(f"{args.images} JPEGs of 224 px, batch {args.batch}; images/s (construction and one pass, best of 2)")
    print("| view | workers | aa (cached) | aa (cache_mb=0) | bare torchvision | aa/bare (cached, decoding) |")
    print("|---|---|---|---|---|---|")
    for view in ("plain", "weak", "strong"):
        for workers in map(int, args.workers.split(",")):
            cached = max(aa_pass(folder, view, workers, args.batch, 512) for _ in range(2))
            decoding = max(aa_pass(folder, view, workers, args.batch, 0) for _ in range(2))
            bare = max(bare_pass(folder, view, workers, args.batch) for _ in range(2))
            ratios = f"{cached / bare:.2f}, {decoding / bare:.2f}"
            print(f"| {view} | {workers} | {cached:.0f} | {decoding:.0f} | {bare:.0f} | {ratios} |", flush=True)


if __name__ == "__main__":
    main()
