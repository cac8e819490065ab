"""A harder pair than the default task: real digits -> the same kind of digits on photographs.

    python benchmarks/harder_pair.py                     # seeds 0 1 2, default algorithms
    python benchmarks/harder_pair.py --seeds 0 -- --ssl mixmatch
    python benchmarks/harder_pair.py --keep DIR --grid-file benchmarks/default-grid.yaml   # a sweep

Built from data that ships with scikit-learn, offline:

* source: half of the 1,797 UCI digits (the even-numbered scans), a real labelled source, as
  light strokes on a dark background, 28x28 RGB;
* target: the other half, in the style of MNIST-M (Ganin & Lempitsky 2015): each digit blended
  into a random crop of scikit-learn's sample photographs (``|crop - digit|`` per channel), 10
  classes, 28x28 RGB. Its labels are split half dev, half test; the table shows both.

Refinement must not make a weak adapter worse: the script prints source only, adapt and refine
per seed (test, then dev), the model the run kept as its result without labels
(``aa_core.final_model``) and whether that final model is within 1 point of adapt or above it.

With ``--grid-file``, the pair is instead an `aa sweep` of that grid under ``ROOT/sweep`` (seeds
``--seeds``; rerun with the same ``--keep`` to resume), and the script prints `aa compare ROOT/sweep
--select snd`: the configurations ranked by a label-free criterion, and each criterion's pick
against the best by dev accuracy (regret).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from seeded_runs import seeded_runs

SIZE = 28  # the images on disk
TRAIN_SIZE = 16  # the input format they are trained at


def digit_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    strokes = [Image.fromarray((d * 255 / 16).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR) for d in digits.images]
    return strokes, digits.target


def blend_on_photo(stroke: Image.Image, photos: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """MNIST-M's recipe: the absolute difference of a photo crop and the digit, per channel."""
    photo = photos[rng.integers(len(photos))]
    y, x = rng.integers(photo.shape[0] - SIZE), rng.integers(photo.shape[1] - SIZE)
    crop = photo[y : y + SIZE, x : x + SIZE].astype(np.int16)
    digit = np.asarray(stroke, dtype=np.int16)[..., None]
    return Image.fromarray(np.abs(crop - digit).astype(np.uint8))


def build(root: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_sample_images

    source, target = root / "source", root / "target"
    if target.is_dir():
        return source, target
    strokes, labels = digit_images()
    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    for i, (stroke, label) in enumerate(zip(strokes, labels)):
        if i % 2 == 0:
            path = source / str(label) / f"{i:04d}.png"
            image = stroke.convert("RGB")
        else:
            path = target / str(label) / f"{i:04d}.png"
            image = blend_on_photo(stroke, photos, rng)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return source, target


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="keep data and run folders under this folder")
    parser.add_argument("--grid-file", type=Path, help="run this grid as a sweep and rank it without labels")
    parser.add_argument("aa_args", nargs="*", help="extra arguments for `aa run` (after --; without --grid-file)")
    return parser.parse_args()


def sweep(root: Path, grid_file: Path, seeds: list[int], sets: list[str]) -> None:
    """`aa sweep` of ``grid_file`` on the pair, then its ranking by SND with every criterion's regret."""
    aa = [sys.executable, "-m", "aa_cli.main"]
    subprocess.run([*aa, "sweep", str(root), "--grid-file", str(grid_file), "--seeds", ",".join(map(str, seeds)),
                    *(a for s in sets for a in ("--set", s))], check=True)  # fmt: skip
    subprocess.run([*aa, "compare", str(root), "--select", "snd"], check=True)


def main() -> None:
    args = parse()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-bench-"))
    source, target = build(root / "data")
    # trained at 16x16 and 1,000 adaptation steps: a run takes minutes on 2 CPU cores, not half an hour
    sets = [f"data.source={source}", f"data.target={target}", f"data.image_size={TRAIN_SIZE}", "data.channels=3", "data.fill=0",
            "data.dev_fraction=0.5", "train.steps=1000"]  # fmt: skip
    if args.grid_file:
        return sweep(root / "sweep", args.grid_file, args.seeds, sets)
    fixed = [a for s in sets for a in ("--set", s)]
    models = ("source_only", "adapt", "refine")
    print(f"{'seed':>4} {'seconds':>8}  test: source  adapt refine   dev: source  adapt refine  pseudo-labels right  reliable"
          "  final   final >= adapt - 0.01")  # fmt: skip
    for seed, seconds, metrics in seeded_runs(root, args.seeds, [*fixed, *args.aa_args]):
        acc, dev, split = metrics["target_accuracy"], metrics.get("dev_accuracy", {}), metrics.get("split", {})
        cells = lambda a: " ".join(f"{a.get(m, float('nan')):>6.4f}" for m in models)  # noqa: E731
        final = metrics["final"]["model"]
        print(
            f"{seed:>4} {seconds:>8.1f}  {cells(acc):>26}  {cells(dev):>26}"
            f"  {split.get('pseudo_label_accuracy', float('nan')):>19.4f}  {str(split.get('reliable', '-')):>8}"
            f"  {final:<7} {'yes' if acc[final] >= acc['adapt'] - 0.01 else 'NO'}"
        )


if __name__ == "__main__":
    main()
