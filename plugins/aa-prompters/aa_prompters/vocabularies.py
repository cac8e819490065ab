"""Built-in words for template prompts, by kind of domain.

Each kind has the words that make its images differ while staying in the domain (axes of
styles, contexts, viewpoints, lighting...), a template that reads naturally with them, and the
words in a domain's name that mark it. ``handwriting`` is the digits task's: font families,
weights, slants and widths, the words the ``glyph`` generator reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Vocabulary:
    template: str  # uses {style}, {domain}, {category}
    axes: dict[str, list[str]]  # one word per axis ("" leaves the axis out), joined by ``joiner``
    markers: tuple[str, ...] = ()  # words of a domain name that pick this kind
    joiner: str = " "
    extra: dict = field(default_factory=dict)


VOCABULARIES: dict[str, Vocabulary] = {
    "handwriting": Vocabulary(
        template="a {style} {domain} {category}",
        axes={
            "family": ["", "serif", "sans-serif", "monospace"],
            "weight": ["light", "regular", "bold"],
            "slant": ["upright", "slanted", "italic"],
            "width": ["narrow", "", "wide"],
        },
        markers=("handwrit", "digit", "letter", "character", "glyph", "written", "script"),
    ),
    "product": Vocabulary(
        template="a {domain} of a {category}, {style}",
        axes={
            "background": ["on a white background", "on a plain grey backdrop", "on a light studio table"],
            "viewpoint": ["front view", "three-quarter view", "side view", "top-down view"],
            "lighting": ["soft studio lighting", "bright even lighting", "with a soft shadow"],
        },
        markers=("product", "catalog", "catalogue", "amazon", "e-commerce", "shop", "stock"),
        joiner=", ",
    ),
    "clipart": Vocabulary(
        template="a {domain} of a {category}, {style}",
        axes={
            "style": ["flat vector style", "cartoon style", "simple line art", "glossy icon style", "hand-drawn style"],
            "colour": ["bright colours", "pastel colours", "two colours", "black outline"],
            "background": ["on a white background", "with no background", "on a coloured square"],
        },
        markers=("clipart", "clip art", "clip-art", "cartoon", "icon", "illustration", "vector", "emoji"),
        joiner=", ",
    ),
    "art": Vocabulary(
        template="a {domain} of a {category}, {style}",
        axes={
            "medium": ["oil painting", "watercolor", "acrylic painting", "gouache", "pastel", "woodcut print"],
            "movement": ["impressionist", "realist", "expressionist", "cubist", "pop art", ""],
            "scene": ["in a still life", "in a landscape", "in an interior", "close-up"],
        },
        markers=("art", "painting", "paint", "artistic", "museum", "watercolor", "oil"),
        joiner=", ",
    ),
    "sketch": Vocabulary(
        template="a {domain} of a {category}, {style}",
        axes={
            "medium": ["pencil", "charcoal", "ink", "ballpoint pen"],
            "stroke": ["rough strokes", "clean outlines", "cross-hatched shading", "quick gesture lines"],
            "paper": ["on white paper", "on lined notebook paper", "on grey paper"],
        },
        markers=("sketch", "drawing", "doodle", "line art", "pencil", "quickdraw"),
        joiner=", ",
    ),
    "rendering": Vocabulary(
        template="a {domain} of a {category}, {style}",
        axes={
            "render": ["3D render", "CAD model", "low-poly model", "ray-traced render"],
            "viewpoint": ["front view", "side view", "three-quarter view", "seen from above"],
            "background": ["on a plain background", "on a grey floor", "in an empty room"],
        },
        markers=("render", "rendering", "3d", "synthetic", "cad", "cgi", "simulat"),
        joiner=", ",
    ),
    # the fallback: a photograph in the world
    "photo": Vocabulary(
        template="a {domain} of a {category}, {style}",
        axes={
            "context": ["on a kitchen table", "in a living room", "in an office", "outdoors", "on a shelf", "in a garage"],
            "viewpoint": ["close-up", "front view", "side view", "seen from above", "from a low angle", "wide shot"],
            "lighting": ["in daylight", "under warm indoor light", "in dim light", "in bright sunlight", "with a flash"],
        },
        markers=("photo", "photograph", "picture", "camera", "webcam", "dslr", "real", "image", "snapshot"),
        joiner=", ",
    ),
}


def kind_of(domain: str) -> str:
    """The first kind (in table order) one of whose markers occurs in the domain's name; else photo."""
    text = domain.lower()
    for name, vocabulary in VOCABULARIES.items():
        if any(marker in text for marker in vocabulary.markers):
            return name
    return "photo"
