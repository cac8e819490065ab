"""Outline fonts (.ttf, .otf): a fixed set a dependency ships, or the machine's own.

By default glyph draws with ``bundled_fonts()``: the DejaVu, STIX and Computer Modern faces that
matplotlib (a dependency) carries, so the default task's images, and its figures, are the same
on every machine whatever fonts it has installed. ``system_fonts()`` adds the system font folders
and packages of the Python Fonts convention (``font-*`` on PyPI, registered under the
``fonts_ttf`` entry-point group, found without importing them). A font's style (family, weight,
italics, hand-drawn) is read from its name and its package's summary.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
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
    name: str = ""  # style words where the file's name has none (cmtt10 is a monospace face)

    @property
    def _name(self) -> str:
        return (self.name or self.path.stem).lower()

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


# matplotlib's faces that have the digits and Latin letters (its symbol, display and last-resort
# faces do not), with the style words their file names lack
BUNDLED = {
    **{f"DejaVu{face}{cut}.ttf": "" for face in ("Sans", "Serif", "SansMono") for cut in ("", "-Bold")},
    **{f"DejaVu{face}-{cut}.ttf": "" for face in ("Sans", "SansMono") for cut in ("Oblique", "BoldOblique")},
    **{f"DejaVuSerif-{cut}.ttf": "" for cut in ("Italic", "BoldItalic")},
    "STIXGeneral.ttf": "stix serif",
    "STIXGeneralBol.ttf": "stix serif bold",
    "STIXGeneralItalic.ttf": "stix serif italic",
    "STIXGeneralBolIta.ttf": "stix serif bold italic",
    "cmr10.ttf": "computer modern serif",
    "cmb10.ttf": "computer modern serif bold",
    "cmti10.ttf": "computer modern serif italic",
    "cmss10.ttf": "computer modern sans",
    "cmtt10.ttf": "computer modern mono",
}


def bundled_fonts() -> list[OutlineFont]:
    """The faces of ``BUNDLED`` in matplotlib's data folder (located without importing it)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"
    return [OutlineFont(folder / file, name=name) for file, name in sorted(BUNDLED.items()) if (folder / file).is_file()]


def folder_fonts(roots: list[Path]) -> list[OutlineFont]:
    found = []
    for root in roots:
        if root.is_file():
            found.append(OutlineFont(root))
        elif root.is_dir():
            found += [OutlineFont(p) for p in sorted(root.rglob("*")) if p.suffix.lower() in SUFFIXES]
    return found


def system_fonts() -> list[OutlineFont]:
    """The machine's fonts: its font folders' and those installed Python packages ship."""
    return folder_fonts([Path(d).expanduser() for d in FONT_DIRS]) + packaged_fonts()


SYSTEM = "system"  # generator.model's word for the machine's own fonts


def outline_fonts(where: str | None = None) -> list[OutlineFont]:
    """Fonts in ``where`` (a font file or folder, or ``"system"``), else the bundled ones."""
    if where is None:
        found = bundled_fonts()
    elif where == SYSTEM:
        found = system_fonts()
    else:
        found = folder_fonts([Path(where).expanduser()])
    return sorted(set(found), key=lambda f: str(f.path))
