"""hand: a small stroke font of the digits as people write them, with their common allographs.

Typefaces draw one form of each digit; handwriting has several: a 1 as a bare stem, with a long
up-stroke, with a foot or both; a 4 closed or open at the top; a 7 plain or crossed; a 3 round or
flat-topped; a 9 with a straight or a curled tail. Each ``HandFont(variant)`` writes the
``variant``-th form of a digit (cycling where a digit has fewer), so choosing a font at random
chooses an allograph. Strokes are polylines in a box one unit high, y pointing down, drawn with
a round pen like the other stroke fonts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

from aa_generators.stroke_fonts import draw_strokes

Point = tuple[float, float]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 16) -> list[Point]:
    """Points of an elliptic arc from ``start`` to ``end`` degrees (0 right, 90 down)."""
    angles = (math.radians(start + (end - start) * k / n) for k in range(n + 1))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# digit -> allographs; an allograph is a list of strokes
ALLOGRAPHS: dict[str, list[list[list[Point]]]] = {
    "0": [[arc(0.3, 0.5, 0.28, 0.5, -90, 270)]],
    "1": [
        [[(0.3, 0.0), (0.3, 1.0)]],
        [[(0.02, 0.35), (0.35, 0.0), (0.35, 1.0)]],
        [[(0.05, 0.3), (0.35, 0.0), (0.35, 1.0)], [(0.05, 1.0), (0.65, 1.0)]],
        [[(0.0, 0.5), (0.4, 0.0), (0.4, 1.0)], [(0.1, 1.0), (0.65, 1.0)]],
    ],
    "2": [[arc(0.31, 0.28, 0.28, 0.27, 200, 400) + [(0.02, 1.0), (0.62, 1.0)]]],
    "3": [
        [arc(0.28, 0.25, 0.27, 0.25, 200, 450) + arc(0.28, 0.74, 0.3, 0.26, 270, 500)[1:]],
        [[(0.03, 0.02), (0.55, 0.02), (0.25, 0.42)] + arc(0.3, 0.71, 0.3, 0.29, 250, 500)],
    ],
    "4": [
        [[(0.45, 1.0), (0.45, 0.0), (0.0, 0.68), (0.62, 0.68)]],
        [[(0.12, 0.0), (0.04, 0.62), (0.62, 0.62)], [(0.46, 0.25), (0.46, 1.0)]],
    ],
    "5": [[[(0.58, 0.0), (0.12, 0.0), (0.08, 0.45)] + arc(0.3, 0.7, 0.28, 0.28, 225, 500)]],
    "6": [[arc(0.42, 0.55, 0.38, 0.55, 290, 150) + arc(0.32, 0.73, 0.27, 0.27, 150, 510)]],
    "7": [
        [[(0.02, 0.02), (0.6, 0.02), (0.22, 1.0)]],
        [[(0.02, 0.02), (0.6, 0.02), (0.22, 1.0)], [(0.16, 0.52), (0.58, 0.48)]],
    ],
    "8": [[arc(0.3, 0.25, 0.22, 0.24, 90, 450), arc(0.3, 0.74, 0.28, 0.26, -90, 270)]],
    "9": [
        [arc(0.3, 0.28, 0.27, 0.27, 0, 360), [(0.57, 0.28), (0.52, 1.0)]],
        [arc(0.3, 0.28, 0.27, 0.27, 0, 360) + arc(0.3, 0.62, 0.27, 0.38, 0, 130)],
    ],
}
VARIANTS = max(len(forms) for forms in ALLOGRAPHS.values())
# extra pen width over the requested stroke: a pen or pencil is broad next to a digit written in
# a small form box, much broader than a typeface's stroke next to its cap height
PEN = 3


@dataclass(frozen=True)
class HandFont:
    variant: int

    @property
    def name(self) -> str:
        return f"hand-{self.variant}"

    family, weight, italic, handwritten = "sans-serif", "regular", False, True

    def covers(self, text: str) -> bool:
        return all(c in ALLOGRAPHS for c in text)

    def draw(self, text: str, stroke: int, canvas: int) -> Image.Image:
        strokes, advance = [], 0.0
        for c in text:
            forms = ALLOGRAPHS[c]
            strokes += [[(x + advance, y) for x, y in s] for s in forms[self.variant % len(forms)]]
            advance += 0.85
        return draw_strokes(strokes, len(text), stroke + PEN, canvas)


def hand_fonts() -> list[HandFont]:
    return [HandFont(v) for v in range(VARIANTS)]
