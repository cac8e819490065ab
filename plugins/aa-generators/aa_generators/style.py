"""Reading a glyph style from the words of a prompt.

Each known word narrows one property; a property no word mentions keeps a broad default, so
"a handwritten digit 7" still varies in every way. Ranges are sampled per image from its seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GlyphStyle:
    family: str | None = None  # serif | sans-serif | monospace; None: any
    weight: str | None = None  # light | regular | bold; None: any
    italic: bool | None = None  # an italic/oblique face; None: any
    handwritten: bool | None = None  # a hand-drawn face; None: any (see hand_share)
    # where handwritten is None: the share of images drawn with a hand-drawn face, which would
    # otherwise be as rare as such faces are among the installed fonts
    hand_share: float = 0.0
    shear: tuple[float, float] = (0.0, 0.3)  # |horizontal shear|, sign drawn at random
    width: tuple[float, float] = (0.85, 1.25)  # horizontal stretch
    stroke: tuple[int, int] = (0, 2)  # extra stroke width, in pixels of the 64-pixel drawing font
    size: tuple[float, float] = (0.9, 1.0)  # glyph height over image height
    rotation: float = 8.0  # degrees, either way
    wobble: tuple[float, float] = (0.0, 0.0)  # elastic distortion, in pixels of the 128-pixel drawing
    # least width over height: handwriting written into form boxes is size-normalised to the box
    # (as NIST's forms), so a narrow character such as 1 comes out as a broad stroke
    min_width: float = 0.0


WORDS: dict[str, dict] = {
    "serif": {"family": "serif"},
    "sans-serif": {"family": "sans-serif"},
    "sans": {"family": "sans-serif"},
    "monospace": {"family": "monospace"},
    "typewriter": {"family": "monospace"},
    "light": {"weight": "light", "stroke": (0, 0)},
    "regular": {"weight": "regular", "stroke": (0, 1)},
    "bold": {"weight": "bold", "stroke": (1, 3)},
    "heavy": {"weight": "bold", "stroke": (3, 4)},
    "italic": {"italic": True, "shear": (0.0, 0.1)},
    "oblique": {"italic": True, "shear": (0.0, 0.1)},
    "upright": {"italic": False, "shear": (0.0, 0.05)},
    "slanted": {"shear": (0.15, 0.4)},
    "narrow": {"width": (0.75, 0.95)},
    "condensed": {"width": (0.75, 0.95)},
    "wide": {"width": (1.1, 1.35)},
    "thin-stroked": {"stroke": (0, 0)},
    "thick-stroked": {"stroke": (2, 4)},
    "small": {"size": (0.6, 0.8)},
    "large": {"size": (0.95, 1.0)},
    "tilted": {"rotation": 15.0},
    "rotated": {"rotation": 25.0},
    "handwritten": {"wobble": (6.0, 14.0), "min_width": 0.5, "hand_share": 0.5},
    "hand-drawn": {"handwritten": True},
    "scribbled": {"wobble": (10.0, 18.0)},
    "printed": {"handwritten": False},
}


def read_style(prompt: str) -> GlyphStyle:
    """The style a prompt asks for; words later in the prompt win over earlier ones."""
    style = GlyphStyle()
    for word in re.findall(r"[a-z]+(?:-[a-z]+)*", prompt.lower()):
        if word in WORDS:
            style = replace(style, **WORDS[word])
    return style
