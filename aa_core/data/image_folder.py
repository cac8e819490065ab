"""Image folders, labelled (one subfolder per category) or flat (unlabelled)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, has_file_allowed_extension

from aa_core.errors import AAError


def is_image(path: Path) -> bool:
    return path.is_file() and has_file_allowed_extension(path.name, IMG_EXTENSIONS)


class LabelledImageFolder(ImageFolder):
    """torchvision's ImageFolder whose class indices follow the configured categories.

    A subfolder that is not a category is an error; a category without a subfolder is allowed.
    """

    def __init__(self, root: str | Path, categories: list[str], transform=None):
        self.categories = list(categories)
        super().__init__(str(root), transform=transform, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        present = sorted(p.name for p in Path(directory).iterdir() if p.is_dir() and not p.name.startswith("."))
        unknown = [name for name in present if name not in self.categories]
        if unknown:
            raise AAError(
                f"{directory} has class folder '{unknown[0]}' that is not a category "
                f"({', '.join(self.categories)}); set task.categories or rename the folder"
            )
        return self.categories, {name: i for i, name in enumerate(self.categories)}


class UnlabelledImageFolder(Dataset):
    """A flat folder of images, sorted by file name; items are ``(image, -1)``."""

    def __init__(self, root: str | Path, transform=None):
        self.root = Path(root)
        self.samples = [(str(p), -1) for p in sorted(self.root.iterdir()) if is_image(p)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        image = default_loader(self.samples[index][0])
        return (self.transform(image) if self.transform else image), -1


def open_image_folder(root: str | Path, categories: list[str]) -> LabelledImageFolder | UnlabelledImageFolder:
    """Open ``root`` as labelled if it has subfolders, else as a flat unlabelled folder."""
    root = Path(root)
    if not root.is_dir():
        raise AAError(f"image folder {root} does not exist; pass an existing folder or a built-in data set name")
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        folder = LabelledImageFolder(root, categories)
    else:
        folder = UnlabelledImageFolder(root)
    if len(folder) == 0:
        raise AAError(f"image folder {root} holds no images ({', '.join(sorted(IMG_EXTENSIONS))})")
    return folder
