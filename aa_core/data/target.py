"""The target domain: the user's unlabelled images.

Class subfolders, when present, give labels that are kept apart from the images: training and
model selection only ever see ``TargetSet.paths`` (read as pixels), never ``labels``.
The labels are split once, by a fixed seed and per class, into a development part
(``data.dev_fraction``) that tuning may read and a test part that only the report reads.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from aa_core.data.builtin import BUILTIN_DATASETS, builtin_dataset
from aa_core.data.image_folder import open_image_folder, shown_name

DEV_SPLIT_SEED = 2310_16573  # fixed: the same images are "dev" in every run and for every seed


@dataclass
class TargetSet:
    root: Path
    paths: list[str]
    labels: list[int] | None  # for reporting only
    dev: frozenset[int] = frozenset()  # indices whose labels tuning may read; the rest are test
    unreadable: list[str] = field(default_factory=list)  # files left out, relative to ``root``

    @property
    def names(self) -> list[str]:
        """Each image's path relative to ``root``, as shown in the files aa writes (``shown_name``)."""
        return [shown_name(str(Path(p).relative_to(self.root))) for p in self.paths]

    @property
    def test(self) -> list[int]:
        return [i for i in range(len(self.paths)) if i not in self.dev]


def dev_split(labels: list[int], keys: list[str], fraction: float) -> frozenset[int]:
    """``round(fraction * n_k)`` images of each class ``k``: those first by the hash of
    ``DEV_SPLIT_SEED`` and their content ``keys``. Fixed, independent of the run's seed, of the
    order of the classes and of their names."""
    draw = [hashlib.sha256(f"{DEV_SPLIT_SEED}:{key}".encode()).hexdigest() for key in keys]
    dev: set[int] = set()
    for k in set(labels):
        members = sorted((i for i, label in enumerate(labels) if label == k), key=lambda i: (draw[i], i))
        dev.update(members[: round(fraction * len(members))])
    return frozenset(dev)


def open_target(spec: str, categories: list[str], dev_fraction: float = 0.0) -> TargetSet:
    """``spec`` is a built-in data set name or an image folder."""
    root = builtin_dataset(spec) if spec in BUILTIN_DATASETS else Path(spec).expanduser()
    found = open_image_folder(root, categories)
    dev = dev_split(found.labels, found.keys, dev_fraction) if found.labels is not None and dev_fraction > 0 else frozenset()
    return TargetSet(root=root, paths=found.paths, labels=found.labels, dev=dev, unreadable=found.unreadable)
