"""glyph: a text-to-image generator for categories that can be written, rendered with fonts.

It reads the category and the style words of each prompt ("a bold slanted handwritten digit 7")
and draws the category's text with a font that fits the style: family, weight and
italics choose the face; slant, width, stroke, size and rotation shape the drawing; words such
as "handwritten" add a smooth elastic wobble. Fonts are outline fonts (.ttf, .otf: by default a
fixed set matplotlib ships, so the images are the same on every machine; ``generator.model:
system`` uses the machine's own, a path a font file or folder alone) and stroke fonts drawn with a round pen (the Hershey faces, and
``hand``: the digits as people write them). Everything random comes from the image's seed.
It never looks at the target: the gap between typefaces and handwriting is a real domain gap.

The pipeline, in order: read the prompt -> choose a font -> draw -> wobble -> slant and rotate
-> stretch and fit into the image -> dark ink on white paper.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps
from pydantic import Field

from aa_core.api import AAError, GeneratorContext, ImageGenerator, Options
from aa_generators.hand_font import HandFont, hand_fonts
from aa_generators.outline_fonts import SYSTEM, OutlineFont, outline_fonts
from aa_generators.stroke_fonts import StrokeFont, stroke_fonts
from aa_generators.style import GlyphStyle, read_style

CANVAS = 128  # drawing resolution; the image is fitted down from it
Font = OutlineFont | StrokeFont | HandFont


class GlyphOptions(Options):
    size: int = Field(32, ge=8, description="output image side in pixels")


class GlyphGenerator(ImageGenerator):
    """Renders the category's text with installed fonts, styled by the prompt's words."""

    Options = GlyphOptions

    def __init__(self, options: GlyphOptions, context: GeneratorContext):
        super().__init__(options, context)
        # a chosen font folder is used alone; the bundled or the system fonts join the stroke fonts
        alone = context.model not in (None, SYSTEM)
        self.fonts: list[Font] = outline_fonts(context.model) + ([] if alone else stroke_fonts() + hand_fonts())
        if not self.fonts:
            raise AAError(f"glyph found no .ttf or .otf fonts in {context.model}; set generator.model to a font file or folder")
        # longest names first, so "10" is found before "1"
        names = sorted(context.categories, key=len, reverse=True)
        self._category = re.compile("|".join(rf"(?<!\w){re.escape(n)}(?!\w)" for n in names))

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        return [self.render(prompt, seed) for prompt, seed in zip(prompts, seeds)]

    def render(self, prompt: str, seed: int) -> Image.Image:
        found = self._category.search(prompt)
        if not found:
            raise AAError(f"glyph found no category in the prompt {prompt!r}; prompts must name the category")
        rng = random.Random(seed)
        style = read_style(prompt)
        font = self.choose_font(style, found.group(0), rng)
        ink = font.draw(found.group(0), rng.randint(*style.stroke), CANVAS)
        ink = wobble(ink, rng.uniform(*style.wobble), rng)
        ink = slant_and_rotate(ink, rng.uniform(*style.shear) * rng.choice((-1, 1)), rng.uniform(-1, 1) * style.rotation)
        ink = fit(ink, self.options.size, rng.uniform(*style.width), rng.uniform(*style.size), style.min_width)
        return ImageOps.invert(ink)

    def choose_font(self, style: GlyphStyle, text: str, rng: random.Random) -> Font:
        """A font that has the text and matches the style (a hand-drawn one with probability
        ``style.hand_share`` where the style leaves it open); constraints are relaxed (weight,
        italics, family, hand) until one fits."""
        fonts = [f for f in self.fonts if f.covers(text)] or self.fonts
        handwritten = style.handwritten
        # the draw is skipped at a zero share so that other prompts keep their images per seed
        if handwritten is None and style.hand_share and rng.random() < style.hand_share:
            handwritten = True
        wanted = {"handwritten": handwritten, "family": style.family, "weight": style.weight, "italic": style.italic}
        relaxing = ("weight", "italic", "family", "handwritten")
        for relax in (relaxing[:n] for n in range(len(relaxing) + 1)):
            fits = [f for f in fonts if all(v is None or k in relax or getattr(f, k) == v for k, v in wanted.items())]
            if fits:
                return rng.choice(fits)
        return rng.choice(fonts)


def wobble(ink: Image.Image, amount: float, rng: random.Random, grid: int = 3) -> Image.Image:
    """Elastic distortion: shift pixels by a smooth random field of size ``amount`` pixels."""
    if amount <= 0:
        return ink
    noise = np.random.default_rng(rng.randrange(2**32))
    w, h = ink.size

    def field() -> np.ndarray:
        coarse = Image.fromarray(noise.uniform(-1, 1, (grid, grid)).astype(np.float32), mode="F")
        return np.asarray(coarse.resize((w, h), Image.BICUBIC)) * amount

    dx, dy = field(), field()
    ys, xs = np.mgrid[0:h, 0:w]
    src_x = np.clip(np.round(xs + dx).astype(int), 0, w - 1)
    src_y = np.clip(np.round(ys + dy).astype(int), 0, h - 1)
    return Image.fromarray(np.asarray(ink)[src_y, src_x])


def slant_and_rotate(ink: Image.Image, shear: float, degrees: float) -> Image.Image:
    w, h = ink.size
    ink = ink.transform(ink.size, Image.AFFINE, (1, shear, -shear * h / 2, 0, 1, 0), resample=Image.BILINEAR)
    return ink.rotate(degrees, resample=Image.BILINEAR)


def fit(ink: Image.Image, size: int, stretch: float, height: float, min_width: float = 0.0) -> Image.Image:
    """Crop to the ink, stretch horizontally (to at least ``min_width`` of the image), scale to
    ``height`` of the image, centre on black."""
    box = ink.getbbox()
    out = Image.new("L", (size, size), 0)
    if box is None:  # the font has no glyph for this text
        return out
    ink = ink.crop(box)
    scale = size * height / ink.height
    w = max(1, min(size, max(round(ink.width * stretch * scale), round(min_width * size))))
    h = max(1, min(size, round(ink.height * scale)))
    ink = ink.resize((w, h), Image.LANCZOS)
    out.paste(ink, ((size - w) // 2, (size - h) // 2))
    return out
