"""Real domain pairs built offline, each with a dev half, for choosing label-free rules.

    python benchmarks/real_pairs.py DIR            # build every pair under DIR and print its sizes

Six pairs, small and large, easy and hard, from data this machine can install:

* ``digits``: the built-in default task (glyph-rendered digits -> the 1,797 UCI digits);
* ``photo``: the even-numbered UCI digits -> the odd ones blended into photographs, MNIST-M's
  recipe (``harder_pair.py``);
* ``glyph-photo``: glyph-rendered digits -> those photographs: a synthetic source, a hard target;
* ``digits-corrupt``: the even UCI digits -> three corrupted copies of each odd one (2,694
  images), with four of ImageNet-C's corruptions (Hendrycks & Dietterich 2019): Gaussian noise,
  Gaussian blur, contrast loss and salt-and-pepper noise, at random severities;
* ``icons-oxygen-papirus`` and ``icons-tango-breeze``: Debian's icon themes draw the same
  freedesktop contexts (actions, apps, devices, places, mimetypes, status, ...) in different styles:
  KDE's glossy Oxygen -> the flat Papirus, GNOME's Tango -> KDE's line-drawn Breeze; up to
  ``ICONS_PER_CLASS`` icons a context, at the size nearest 32 px, on white; trained at 24 and
  16 px.

Each builder writes ``<root>/<pair>/source`` and ``target`` as class folders once and reuses them;
``PAIRS[name](root)`` returns the ``aa run`` arguments of the pair.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from harder_pair import TRAIN_SIZE, build, digit_images
from PIL import Image, ImageFilter

ICON_SIZE = 32
ICONS_PER_CLASS = 60
ICON_PACKAGES = "apt-get install -y papirus-icon-theme oxygen-icon-theme tango-icon-theme breeze-icon-theme librsvg2-bin"
CONTEXTS = ("actions", "apps", "categories", "devices", "emblems", "emotes", "mimetypes", "places", "status")
THEMES = {"oxygen": "/usr/share/icons/oxygen/base", "tango": "/usr/share/icons/Tango",
          "papirus": "/usr/share/icons/Papirus", "breeze": "/usr/share/icons/breeze"}  # fmt: skip

DIGITS = ["--set", f"data.image_size={TRAIN_SIZE}", "--set", "data.channels=3", "--set", "data.fill=0",
          "--set", "data.dev_fraction=0.5", "--set", "train.steps=1000"]  # fmt: skip
ICONS = ["--set", "data.channels=3", "--set", "data.fill=255", "--set", "data.dev_fraction=0.5", "--set", "train.steps=1000"]


# ---- corruptions (ImageNet-C's, on 0..255 uint8 arrays) ----------------------------------------


def gaussian_noise(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return image + rng.normal(0, 255 * 0.08 * severity, image.shape)


def gaussian_blur(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(Image.fromarray(image.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6 * severity)), dtype=np.float64)


def contrast(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    mean = image.mean()
    return (image - mean) * (1 - 0.22 * severity) + mean


def salt_and_pepper(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    out, hit = image.copy(), rng.random(image.shape[:2])
    out[hit < 0.03 * severity] = 0
    out[hit > 1 - 0.03 * severity] = 255
    return out


CORRUPTIONS = (gaussian_noise, gaussian_blur, contrast, salt_and_pepper)


def digits_corrupt(root: Path) -> tuple[Path, Path]:
    """Even UCI digits (light strokes on dark, RGB) -> three corrupted copies of each odd one."""
    source, target = root / "source", root / "target"
    if target.is_dir():
        return source, target
    strokes, labels = digit_images()
    rng = np.random.default_rng(0)
    for i, (stroke, label) in enumerate(zip(strokes, labels)):
        rgb = np.asarray(stroke.convert("RGB"), dtype=np.float64)
        if i % 2 == 0:
            save(source / str(label) / f"{i:04d}.png", rgb)
            continue
        for copy, k in enumerate(rng.choice(len(CORRUPTIONS), 3, replace=False)):
            corrupted = CORRUPTIONS[k](rgb, rng.uniform(1, 4), rng)
            save(target / str(label) / f"{i:04d}-{copy}.png", corrupted)
    return source, target


def save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path)


# ---- icon themes --------------------------------------------------------------------------------


def icon_files(theme: str) -> dict[str, list[Path]]:
    """Per context, one file per icon name at the size nearest ``ICON_SIZE`` (symlinks resolved, so an
    icon drawn once under two names counts once); scaled (@2x) and symbolic variants left out."""
    base = Path(THEMES[theme])
    if not base.is_dir():
        sys.exit(f"{theme} icon theme not found at {base}: install the themes with `{ICON_PACKAGES}`")
    best: dict[tuple[str, str], tuple[int, Path]] = {}
    for path in base.rglob("*"):
        if path.suffix not in {".png", ".svg"} or "@" in str(path) or "symbolic" in str(path):
            continue
        parts = path.relative_to(base).parts
        context = next((p for p in parts if p in CONTEXTS), None)
        size = next((int(p.split("x")[0]) for p in parts if p.split("x")[0].isdigit()), None)
        if context is None or size is None or not path.resolve().is_file():
            continue
        key, distance = (context, path.stem), abs(size - ICON_SIZE)
        if key not in best or distance < best[key][0]:
            best[key] = (distance, path)
    files: dict[str, dict[Path, None]] = {}
    for (context, _), (_, path) in sorted(best.items()):
        files.setdefault(context, {})[path.resolve()] = None
    return {context: list(paths) for context, paths in files.items()}


def render(path: Path, out: Path) -> bool:
    """``path`` as an ``ICON_SIZE`` RGB image on white; False where it cannot be read."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.suffix == ".svg":
            if shutil.which("rsvg-convert") is None:
                sys.exit(f"rsvg-convert not found: install it with `{ICON_PACKAGES}`")
            png = out.with_suffix(".tmp.png")
            subprocess.run(["rsvg-convert", "-w", str(ICON_SIZE), "-h", str(ICON_SIZE), "-o", str(png), str(path)],
                           check=True, capture_output=True, timeout=30)  # fmt: skip
            image = Image.open(png)
            image.load()
            png.unlink()
        else:
            image = Image.open(path)
        image = image.convert("RGBA").resize((ICON_SIZE, ICON_SIZE), Image.BILINEAR)
    except (OSError, subprocess.SubprocessError):
        return False
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    Image.alpha_composite(white, image).convert("RGB").save(out)
    return True


def icons(root: Path, source_theme: str, target_theme: str) -> tuple[Path, Path]:
    """The contexts both themes draw, up to ``ICONS_PER_CLASS`` icons each, chosen by a fixed seed."""
    source, target = root / "source", root / "target"
    if target.is_dir():
        return source, target
    files = {theme: icon_files(theme) for theme in (source_theme, target_theme)}
    rng = np.random.default_rng(0)
    for context in sorted(set(files[source_theme]) & set(files[target_theme])):
        for theme, folder in ((source_theme, source), (target_theme, target)):
            paths = files[theme][context]
            chosen = rng.permutation(len(paths))[:ICONS_PER_CLASS]
            for k in chosen:
                render(paths[k], folder / context / f"{k:05d}.png")
    return source, target


def pair(source: Path, target: Path, extra: list[str], synthetic: bool = False) -> list[str]:
    return [*([] if synthetic else ["--source", str(source)]), "--target", str(target), *extra]


def icon_pair(source: Path, target: Path, size: int) -> list[str]:
    """The icons' categories are their contexts, the folder names; trained at ``size`` px (FixMatch's
    strong views cost a 24 px run ten minutes on 2 cores, a 16 px one half that)."""
    categories = ",".join(sorted(folder.name for folder in target.iterdir()))
    return [*pair(source, target, ICONS), "--set", f"data.image_size={size}", "--set", f"task.categories=[{categories}]",
            "--set", "task.domain=icon"]  # fmt: skip


PAIRS: dict[str, Callable[[Path], list[str]]] = {
    "digits": lambda root: [],
    "photo": lambda root: pair(*build(root / "photo"), DIGITS),
    "glyph-photo": lambda root: pair(*build(root / "photo"), DIGITS, synthetic=True),
    "digits-corrupt": lambda root: pair(*digits_corrupt(root / "digits-corrupt"), DIGITS),
    "icons-oxygen-papirus": lambda root: icon_pair(*icons(root / "icons-oxygen-papirus", "oxygen", "papirus"), 24),
    "icons-tango-breeze": lambda root: icon_pair(*icons(root / "icons-tango-breeze", "tango", "breeze"), 16),
}


def main() -> None:
    root = Path(sys.argv[1])
    for name, make in PAIRS.items():
        args = make(root)
        for flag in ("--source", "--target"):
            if flag in args:
                folder = Path(args[args.index(flag) + 1])
                counts = {c.name: sum(1 for _ in c.iterdir()) for c in sorted(folder.iterdir())}
                print(f"{name:<22} {flag[2:]:<7} {sum(counts.values()):>5} images  {counts}")


if __name__ == "__main__":
    main()
