"""Outline fonts (.ttf, .otf): those in the system font folders and those Python packages ship.

Packages of the Python Fonts convention (``font-*`` on PyPI) register their files under the
``fonts_ttf`` entry-point group; their files are found without importing them. A font's style
(family, weight, italics, hand-drawn) is read from its file name and its package's summary.
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts"]
SUFFIXES = {".ttf", ".otf"}
HAND_WORDS = ("hand", "script", "brush", "marker")
FONT_SIZE = 64  # pixels; digits come out about 47 pixels tall


@cache
def _face(path: Path) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), FONT_SIZE)  # read once, not for every image


@dataclass(frozen=True)
class OutlineFont:
    path: Path
    about: str = ""  # the shipping package's summary, if any

    @property
    def _name(self) -> str:
        return self.path.stem.lower()

    @property
    def family(self) -> str:
        name = self._name
        if "mono" in name or "courier" in name:
            return "monospace"
        if "serif" in name and "sans" not in name:
            return "serif"
        return "sans-serif"

    @property
    def weight(self) -> str:
        name = self._name
        if any(w in name for w in ("light", "thin")):
            return "light"
        if any(w in name for w in ("bold", "black", "heavy")):
            return "bold"
        return "regular"

    @property
    def italic(self) -> bool:
        return "italic" in self._name or "oblique" in self._name

    @property
    def handwritten(self) -> bool:
        text = f"{self._name} {self.about.lower()}"
        return any(word in text for word in HAND_WORDS)

    def covers(self, text: str) -> bool:
        return True  # a missing glyph draws nothing, which ``fit`` leaves blank

    def draw(self, text: str, stroke: int, canvas: int) -> Image.Image:
        """White ink on black, the text centred on a ``canvas``-pixel-high image; ``stroke``
        pixels of outline thicken every stroke."""
        face = _face(self.path)
        image = Image.new("L", (canvas * max(1, len(text)), canvas), 0)
        pen = ImageDraw.Draw(image)
        left, top, right, bottom = pen.textbbox((0, 0), text, font=face, stroke_width=stroke)
        x = (image.width - (right - left)) / 2 - left
        y = (image.height - (bottom - top)) / 2 - top
        pen.text((x, y), text, fill=255, font=face, stroke_width=stroke, stroke_fill=255)
        return image


def packaged_fonts() -> list[OutlineFont]:
    """Font files of installed distributions that register ``fonts_ttf`` entry points."""
    found = []
    for dist in md.distributions():
        if any(ep.group == "fonts_ttf" for ep in dist.entry_points):
            about = dist.metadata.get("Summary") or ""
            for file in dist.files or []:
                if file.suffix.lower() in SUFFIXES:
                    found.append(OutlineFont(Path(dist.locate_file(file)), about))
    return found


def outline_fonts(where: str | None = None) -> list[OutlineFont]:
    """Fonts in ``where`` (a font file or folder), else the system's and the packaged ones."""
    roots = [Path(where).expanduser()] if where else [Path(d).expanduser() for d in FONT_DIRS]
    found = []
    for root in roots:
        if root.is_file():
            found.append(OutlineFont(root))
        elif root.is_dir():
            found += [OutlineFont(p) for p in sorted(root.rglob("*")) if p.suffix.lower() in SUFFIXES]
    if where is None:
        found += packaged_fonts()
    return sorted(set(found), key=lambda f: str(f.path))
