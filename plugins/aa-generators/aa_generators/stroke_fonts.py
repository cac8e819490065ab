"""Stroke fonts: faces made of pen paths rather than filled outlines (the Hershey fonts).

A stroke font gives the centre line of each stroke; the glyph is drawn with a round pen whose
width the style chooses, as a hand draws with a pen. The Hershey fonts ship with the
``Hershey-Fonts`` package; only its Latin text faces are used (not its symbols, Greek,
Cyrillic or blackletter). A face's style is read from its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageDraw

# Latin text faces: simplex (one line), duplex (two lines), triplex (three lines), script, cursive
TEXT_FACES = (
    "futural", "futuram", "rowmans", "rowmand", "rowmant", "timesr", "timesi", "timesrb", "timesib", "scripts", "scriptc", "cursive",
)  # fmt: skip
HEIGHT = 48  # pixels from base to cap line, as tall as an outline font's digits
BASE_PEN = 6  # pen width in pixels at the lightest stroke: an eighth of the height


@cache
def _face(name: str):
    from HersheyFonts import HersheyFonts

    face = HersheyFonts()
    face.load_default_font(name)
    return face


@dataclass(frozen=True)
class StrokeFont:
    name: str  # a Hershey face, e.g. "futural"

    @property
    def family(self) -> str:
        return "serif" if self.name.startswith("times") or self.name == "rowmant" else "sans-serif"

    @property
    def weight(self) -> str:
        return "bold" if self.name in ("futuram", "rowmand", "timesrb", "timesib") else "regular"

    @property
    def italic(self) -> bool:
        return self.name in ("timesi", "timesib", "scripts", "scriptc", "cursive")

    @property
    def handwritten(self) -> bool:
        return self.name in ("scripts", "scriptc", "cursive")

    def covers(self, text: str) -> bool:
        return all(" " <= c <= "~" for c in text)  # the Hershey faces hold printable ASCII

    def draw(self, text: str, stroke: int, canvas: int) -> Image.Image:
        return draw_strokes(_face(self.name).strokes_for_text(text), len(text), stroke, canvas)


def draw_strokes(strokes: list, length: int, stroke: int, canvas: int) -> Image.Image:
    """White pen paths on black, ``HEIGHT`` pixels tall, centred on a ``canvas``-pixel-high image
    ``length`` characters wide; the pen is ``BASE_PEN + 2 * stroke`` pixels wide. ``strokes`` are
    polylines of ``(x, y)`` points, y pointing down."""
    strokes = [s for s in strokes if s]
    image = Image.new("L", (canvas * max(1, length), canvas), 0)
    if not strokes:
        return image
    xs = [x for s in strokes for x, _ in s]
    ys = [y for s in strokes for _, y in s]
    scale = HEIGHT / max(1e-6, max(ys) - min(ys))
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    pen = ImageDraw.Draw(image)
    width = BASE_PEN + 2 * stroke
    for s in strokes:
        points = [(image.width / 2 + (x - cx) * scale, image.height / 2 + (y - cy) * scale) for x, y in s]
        pen.line(points, fill=255, width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round pen tips
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return image


def stroke_fonts() -> list[StrokeFont]:
    """The installed stroke fonts' text faces; none when Hershey-Fonts is not installed."""
    try:
        from HersheyFonts import HersheyFonts
    except ImportError:
        return []
    available = set(HersheyFonts().default_font_names)
    return [StrokeFont(name) for name in TEXT_FACES if name in available]
