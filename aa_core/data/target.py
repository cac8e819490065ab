"""The target domain: the user's unlabelled images.

Class subfolders, when present, give labels that are kept apart from the images: training and
model selection only ever see ``TargetSet.images(...)``, which yields pixels and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader

from aa_core.data.builtin import BUILTIN_DATASETS, builtin_dataset
from aa_core.data.image_folder import LabelledImageFolder, open_image_folder


class Images(Dataset):
    """Images from a list of paths, optionally transformed; no labels."""

    def __init__(self, paths: list[str], transform=None):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = default_loader(self.paths[index])
        return self.transform(image) if self.transform else image


@dataclass
class TargetSet:
    root: Path
    paths: list[str]
    labels: list[int] | None  # for reporting only

    @property
    def names(self) -> list[str]:
        return [str(Path(p).relative_to(self.root)) for p in self.paths]

    def images(self) -> Images:
        return Images(self.paths)


def open_target(spec: str, categories: list[str]) -> TargetSet:
    """``spec`` is a built-in data set name or an image folder."""
    root = builtin_dataset(spec) if spec in BUILTIN_DATASETS else Path(spec).expanduser()
    folder = open_image_folder(root, categories)
    labelled = isinstance(folder, LabelledImageFolder)
    return TargetSet(
        root=root,
        paths=[path for path, _ in folder.samples],
        labels=[label for _, label in folder.samples] if labelled else None,
    )
