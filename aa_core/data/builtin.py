"""Built-in target data sets, materialised once as image folders in the cache.

``sklearn-digits``: the 1,797 UCI optical digits that ship with scikit-learn (8x8, values 0..16,
counts of set pixels in 4x4 blocks of 32x32 scans). Written as dark ink on white paper, one
subfolder per digit; the folder names are labels for reporting only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("AA_CACHE", Path.home() / ".cache" / "adapt-anything"))


def sklearn_digits(root: Path) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        paper = (255 - pixels * 255 / 16).round().astype(np.uint8)
        Image.fromarray(paper, mode="L").save(folder / f"{index:04d}.png")


BUILTIN_DATASETS = {"sklearn-digits": sklearn_digits}


def builtin_dataset(name: str) -> Path:
    """The folder of built-in data set ``name``, written on first use (atomically)."""
    root = cache_dir() / "datasets" / name
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{name}-"))
        try:
            BUILTIN_DATASETS[name](tmp)
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():  # another process may have won the race
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root
