"""Installed fonts, found on disk and described by the style words of their file names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts"]
SUFFIXES = {".ttf", ".otf"}


@dataclass(frozen=True)
class Font:
    path: Path

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
    def condensed(self) -> bool:
        return "condensed" in self._name or "narrow" in self._name


def find_fonts(where: str | None = None) -> list[Font]:
    """Fonts in ``where`` (a font file or folder), else in the usual system font folders."""
    roots = [Path(where).expanduser()] if where else [Path(d).expanduser() for d in FONT_DIRS]
    found = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found += [p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES]
    return [Font(p) for p in sorted(set(found))]
