"""Image folders, labelled (one subfolder per category) or flat (unlabelled).

Files that do not open as images are left out and listed (``ImageList.unreadable``): one bad
download must not stop a run over thousands of good images.

The images are ordered by their content (the SHA-256 of the file's bytes), not by their paths:
class folders are labels, and an order that followed them would let the labels steer which
images share a batch. The same images given as a labelled folder, as one whose class folders are
renamed, or flat, come in the same order, and so train the same weights.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from aa_core.errors import AAError
from aa_core.run_folder import walk_files


def shown_name(name: str) -> str:
    """A file name as text any file, CSV or terminal can hold, one line: bytes that are not UTF-8
    (``\\xff``, common on old archives) and control characters (a newline, an escape sequence) are
    written as their escapes; any other name is itself."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def is_image(path: Path) -> bool:
    """An image file by its extension; hidden files (half-written ones among them) are not."""
    return not path.name.startswith(".") and path.is_file() and has_file_allowed_extension(path.name, IMG_EXTENSIONS)


# what is checked before any pixel is decoded: far above any photograph (a 45-megapixel camera's
# 8256x5504 passes), far below what would exhaust memory (PIL's own limit decodes 89M pixels)
MAX_BYTES = 512 << 20
MAX_PIXELS = 64_000_000


def content_key(path: Path) -> str | None:
    """The SHA-256 of the file's bytes if it is an image aa can use, else ``None``.

    Checked in order of cost: the file's size (no byte read), the image's size from its header
    (nothing decoded), its structure (``verify``: a PNG's chunks and their checksums), and for a
    JPEG, whose ``verify`` decodes nothing, every byte decoded at an eighth of its size
    (``draft``): a truncated JPEG is found here, not in the middle of training. The bytes are
    hashed in chunks: memory does not grow with the file.
    """
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        with warnings.catch_warnings():  # PIL's bomb warning: the size is judged here, in one line of unreadable.txt
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if image.width * image.height > MAX_PIXELS:
                return None
            jpeg = image.format == "JPEG"
            image.verify()
        if jpeg:
            with Image.open(path) as image:
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except Exception:  # PIL raises many kinds (UnidentifiedImageError, SyntaxError, OSError, DecompressionBombError...)
        return None
    return digest.hexdigest()


def open_image(path: Path) -> Image.Image | None:
    """The image at ``path``, decoded, or None for what the scan would leave out (not an image,
    truncated, over ``MAX_BYTES`` or ``MAX_PIXELS``, a bomb PIL refuses): never an exception."""
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            if image.width * image.height > MAX_PIXELS:
                return None
            return image.copy()  # decoded now: the file closes here
    except Exception:  # PIL raises many kinds (OSError, SyntaxError, DecompressionBombError, ValueError...)
        return None


@dataclass
class ImageList:
    """The readable images of a folder in content order, their class indices (``None`` for a flat
    folder) and content keys."""

    root: Path
    paths: list[str]
    labels: list[int] | None
    keys: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # relative to ``root``, as shown (``shown_name``)

    def __len__(self) -> int:
        return len(self.paths)


def class_folders(root: Path, categories: list[str]) -> list[str]:
    """Class subfolder names of ``root``; each must be a category, and inside ``root`` (a link to a
    folder elsewhere would train on images the user did not give)."""
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [name for name in present if name not in categories]
    if unknown:
        raise AAError(
            f"{root} has class folder '{unknown[0]}' that is not a category "
            f"({', '.join(categories)}); set task.categories or rename the folder"
        )
    for name in present:
        if not (root / name).resolve().is_relative_to(root.resolve()):
            raise AAError(f"{root / name} is a link to {(root / name).resolve()}, outside {root}; "
                          "copy or move the images into the folder (aa follows no link out of it)")  # fmt: skip
    return present


def image_files(folder: Path, root: Path) -> tuple[list[Path], list[Path]]:
    """The image files under ``folder``, sorted, walked as ``walk_files`` does (any depth, links to
    folders not followed), and the links among them that lead out of ``root`` (left out)."""
    found, outside, inside = [], [], root.resolve()
    for path in walk_files(folder):
        if is_image(path):
            (outside if path.is_symlink() and not path.resolve().is_relative_to(inside) else found).append(path)
    return sorted(found), sorted(outside)


def open_image_folder(root: str | Path, categories: list[str], *, labelled: bool | None = None, named: set[str] | None = None) -> ImageList:
    """Open ``root`` as labelled if it has subfolders, else as a flat unlabelled folder.

    ``labelled=True`` requires class subfolders (a source must have labels).
    """
    root = Path(root)
    if not root.is_dir():
        raise AAError(f"image folder {root} does not exist; pass an existing folder or a built-in data set name")
    classes = class_folders(root, categories)
    if labelled and not classes:
        raise AAError(f"image folder {root} has no class subfolders; a labelled folder holds one per category")
    found, outside = [], []
    if classes:
        for c in classes:
            images, links = image_files(root / c, root)
            found += [(p, categories.index(c)) for p in images]
            outside += links
    else:
        found = [(p, -1) for p in sorted(root.iterdir()) if is_image(p)]
        outside = [p for p, _ in found if p.is_symlink() and not p.resolve().is_relative_to(root.resolve())]
        found = [(p, label) for p, label in found if p not in outside]
    if named is not None:  # a folder with a list of its images (the synthetic source): only those
        found = [(p, label) for p, label in found if p.relative_to(root).as_posix() in named]
    keyed = [(content_key(p), p.name, str(p), label) for p, label in found] + [(None, p.name, str(p), -1) for p in outside]
    # identical files tie on the key; their order cannot change a pixel, so the name settles it
    good = sorted(row for row in keyed if row[0] is not None)
    bad = sorted(shown_name(str(Path(p).relative_to(root))) for key, _, p, _ in keyed if key is None)
    if not good:
        what = f"{len(bad)} file(s), none of which opens as an image" if bad else f"no images ({', '.join(sorted(IMG_EXTENSIONS))})"
        raise AAError(f"image folder {root} holds {what}; add readable images")
    return ImageList(
        root=root,
        paths=[p for _, _, p, _ in good],
        labels=[label for *_, label in good] if classes else None,
        keys=[key for key, *_ in good],
        unreadable=bad,
    )
