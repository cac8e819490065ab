"""Image folders, labelled (one subfolder per category) or flat (unlabelled).

Files that do not open as images are left out and listed (``ImageList.unreadable``): one bad
download must not stop a run over thousands of good images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from aa_core.errors import AAError


def is_image(path: Path) -> bool:
    """An image file by its extension; hidden files (half-written ones among them) are not."""
    return not path.name.startswith(".") and path.is_file() and has_file_allowed_extension(path.name, IMG_EXTENSIONS)


def opens(path: str) -> bool:
    """Whether ``path`` parses as an image (header and structure; pixels decode later)."""
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # PIL raises many kinds (UnidentifiedImageError, SyntaxError, OSError...)
        return False


@dataclass
class ImageList:
    """The readable images of a folder, and their class indices (``None`` for a flat folder)."""

    root: Path
    paths: list[str]
    labels: list[int] | None
    unreadable: list[str] = field(default_factory=list)  # relative to ``root``

    def __len__(self) -> int:
        return len(self.paths)


def class_folders(root: Path, categories: list[str]) -> list[str]:
    """Class subfolder names of ``root``; each must be a category."""
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [name for name in present if name not in categories]
    if unknown:
        raise AAError(
            f"{root} has class folder '{unknown[0]}' that is not a category "
            f"({', '.join(categories)}); set task.categories or rename the folder"
        )
    return present


def open_image_folder(root: str | Path, categories: list[str], *, labelled: bool | None = None) -> ImageList:
    """Open ``root`` as labelled if it has subfolders, else as a flat unlabelled folder.

    ``labelled=True`` requires class subfolders (a source must have labels).
    """
    root = Path(root)
    if not root.is_dir():
        raise AAError(f"image folder {root} does not exist; pass an existing folder or a built-in data set name")
    classes = class_folders(root, categories)
    if labelled and not classes:
        raise AAError(f"image folder {root} has no class subfolders; a labelled folder holds one per category")
    if classes:
        found = [(p, categories.index(c)) for c in classes for p in sorted((root / c).rglob("*")) if is_image(p)]
    else:
        found = [(p, -1) for p in sorted(root.iterdir()) if is_image(p)]
    good = [(str(p), label) for p, label in found if opens(str(p))]
    bad = sorted({str(p.relative_to(root)) for p, _ in found} - {str(Path(p).relative_to(root)) for p, _ in good})
    if not good:
        what = f"{len(bad)} file(s), none of which opens as an image" if bad else f"no images ({', '.join(sorted(IMG_EXTENSIONS))})"
        raise AAError(f"image folder {root} holds {what}; add readable images")
    return ImageList(
        root=root,
        paths=[p for p, _ in good],
        labels=[label for _, label in good] if classes else None,
        unreadable=bad,
    )
