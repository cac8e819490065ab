"""The template prompter and the glyph generator, through their real entry points."""

import re

import numpy as np
import pytest

from aa_core.api import AAError, GeneratorContext, PrompterContext
from aa_core.plugins import plugin_manager

DIGITS = [str(d) for d in range(10)]


def glyph(model=None):
    cls = plugin_manager().load("generator", "glyph")
    return cls(cls.Options(), GeneratorContext(model, DIGITS, "cpu"))


def test_template_prompts_are_deterministic_and_name_category_and_domain(tmp_path):
    cls = plugin_manager().load("prompter", "template")
    prompter = cls(cls.Options(), PrompterContext(None, tmp_path / "cache", tmp_path / "run", True))
    prompts = prompter.prompts(["cat", "dog"], "watercolor painting", per_class=4, seed=1)
    assert prompts == prompter.prompts(["cat", "dog"], "watercolor painting", per_class=4, seed=1)
    assert prompts != prompter.prompts(["cat", "dog"], "watercolor painting", per_class=4, seed=2)
    assert [p.label for p in prompts] == ["cat"] * 4 + ["dog"] * 4
    assert all(p.text.startswith("a watercolor painting of a ") and p.label in p.text for p in prompts)  # the art kind
    assert len({p.text for p in prompts}) == 8  # diverse styles


@pytest.mark.parametrize(
    ("domain", "kind", "words"),
    [
        ("handwritten digit", "handwriting", ("bold", "italic", "serif", "narrow", "wide", "light", "slanted")),
        ("product photo on a white background", "product", ("view", "lighting", "background", "backdrop", "shadow")),
        ("clipart illustration", "clipart", ("style", "colours", "outline", "background")),
        ("artistic painting", "art", ("painting", "watercolor", "pastel", "gouache", "print")),
        ("pencil sketch", "sketch", ("pencil", "charcoal", "ink", "pen")),
        ("low-resolution webcam photo", "photo", ("light", "view", "close-up", "shot", "angle", "sunlight")),
        ("3D rendering of a CAD model", "rendering", ("render", "model", "view", "above")),
    ],
)
def test_the_domain_name_picks_a_vocabulary_of_its_kind(tmp_path, domain, kind, words):
    from aa_prompters.vocabularies import kind_of

    assert kind_of(domain) == kind
    cls = plugin_manager().load("prompter", "template")
    prompts = cls(cls.Options(), PrompterContext(None, tmp_path, tmp_path, True)).prompts(["Alarm_Clock", "mug"], domain, 6, seed=0)
    assert all(domain in p.text and p.label.replace("_", " ") in p.text for p in prompts)
    assert all(any(w in p.text.removeprefix(f"a {domain}").removeprefix(f"an {domain}") for w in words) for p in prompts)
    assert len({p.text for p in prompts}) == 12 and not any(re.search(r"\ba [aeiouAEIOU]", p.text) for p in prompts)


def test_the_digits_prompts_are_the_handwriting_kind_exactly():
    cls = plugin_manager().load("prompter", "template")
    context = PrompterContext(None, None, None, True)
    words = {"family": ["", "serif", "sans-serif", "monospace"], "weight": ["light", "regular", "bold"],
             "slant": ["upright", "slanted", "italic"], "width": ["narrow", "", "wide"]}  # fmt: skip
    explicit = cls(cls.Options(template="a {style} {domain} {category}", styles=words), context)
    default = cls(cls.Options(), context).prompts(DIGITS, "handwritten digit", 50, seed=0)
    assert default == explicit.prompts(DIGITS, "handwritten digit", 50, seed=0)
    assert default[0].text == "a bold slanted wide handwritten digit 0"


def test_glyph_is_deterministic_per_seed_and_varies_across_seeds():
    generator = glyph()
    a, b, c = generator.generate(["a bold handwritten digit 7"] * 3, [1, 1, 2])
    assert a.size == (32, 32) and a.mode == "L"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_glyph_reads_style_words():
    generator = glyph()
    ink = lambda prompt: np.mean([255 - np.asarray(im).mean() for im in generator.generate([prompt] * 8, list(range(8)))])  # noqa: E731
    assert ink("a heavy digit 8") > 1.3 * ink("a light digit 8")
    small = generator.generate(["a small digit 1"], [0])[0]
    rows = np.flatnonzero((np.asarray(small) < 128).any(axis=1))
    assert rows[-1] - rows[0] < 0.85 * 32
    from aa_generators.style import read_style

    style = read_style("a bold italic serif wide handwritten digit 3")
    assert (style.weight, style.italic, style.family) == ("bold", True, "serif")
    assert style.width[0] > 1 and style.wobble[0] > 0


def test_glyph_draws_the_category_named_in_the_prompt():
    generator = glyph()
    ones = generator.generate(["an upright regular digit 1"] * 16, range(16))
    eights = generator.generate(["an upright regular digit 8"] * 16, range(16))
    ink = lambda ims: np.mean([(np.asarray(im) < 128).mean() for im in ims])  # noqa: E731
    assert ink(eights) > 1.4 * ink(ones)
    with pytest.raises(AAError, match="glyph found no category in the prompt 'a digit'"):
        generator.generate(["a digit"], [0])


def test_glyph_without_fonts_is_a_clear_error(tmp_path):
    with pytest.raises(AAError, match="glyph found no .ttf or .otf fonts in"):
        glyph(model=str(tmp_path))


def test_glyph_draws_with_the_bundled_fonts_whatever_the_machine_has(tmp_path, monkeypatch):
    import shutil

    from aa_generators import outline_fonts as of

    bundled = glyph().fonts
    outline = [f for f in bundled if isinstance(f, of.OutlineFont)]
    assert len(outline) == len(of.BUNDLED) == 21 and all(f.path.parent.parts[-3:] == ("mpl-data", "fonts", "ttf") for f in outline)
    styles = {(f.family, f.weight, f.italic) for f in outline}
    assert {("monospace", "regular", False), ("serif", "bold", True), ("sans-serif", "bold", True)} <= styles
    prompts, seeds = [f"a digit {d}" for d in DIGITS] * 3, range(30)
    before = [im.tobytes() for im in glyph().generate(prompts, seeds)]
    # the machine gains a font: the default images stay, the machine's-fonts option sees it
    shutil.copy(outline[0].path, tmp_path / "Extra-Heavy.ttf")
    monkeypatch.setattr(of, "FONT_DIRS", [str(tmp_path)])
    assert [im.tobytes() for im in glyph().generate(prompts, seeds)] == before
    system = glyph(model="system").fonts
    assert [f.path for f in system if isinstance(f, of.OutlineFont)] == [tmp_path / "Extra-Heavy.ttf"]
    assert len(system) == 1 + len(bundled) - len(outline)  # the stroke fonts join the machine's


def test_glyph_never_reproduces_a_target_image():
    from PIL import Image
    from sklearn.datasets import load_digits

    targets = (255 - load_digits().images * 255 / 16).reshape(-1, 64)
    rendered = glyph().generate([f"a handwritten digit {d}" for d in DIGITS], range(10))
    small = np.stack([np.asarray(im.resize((8, 8), Image.BILINEAR), dtype=float).ravel() for im in rendered])
    distances = np.abs(small[:, None, :] - targets[None, :, :]).mean(axis=2)
    assert distances.min() > 10  # mean absolute difference per pixel, on 0..255


def test_glyph_draws_stroke_fonts_upright_with_the_pen_the_style_asks():
    from aa_generators.stroke_fonts import StrokeFont

    generator = glyph()
    faces = {f.name for f in generator.fonts if isinstance(f, StrokeFont)}
    assert {"futural", "timesr", "scripts"} <= faces  # Hershey-Fonts is a dependency of aa-generators
    seven = np.asarray(StrokeFont("futural").draw("7", 0, 128)) > 0
    rows = np.flatnonzero(seven.any(axis=1))
    top, bottom = seven[rows[0] : rows[0] + 8], seven[rows[-1] - 7 : rows[-1] + 1]
    assert top.sum() > 3 * bottom.sum()  # the bar of a 7 is at the top
    ink = lambda stroke: (np.asarray(StrokeFont("futural").draw("8", stroke, 128)) > 0).sum()  # noqa: E731
    assert ink(4) > 1.8 * ink(0)
    assert StrokeFont("scripts").handwritten and StrokeFont("timesr").family == "serif"


def test_handwritten_glyphs_are_normalised_to_at_least_half_the_box_width():
    generator = glyph()

    def widths(prompt):
        out = []
        for im in generator.generate([prompt] * 8, range(8)):
            cols = np.flatnonzero((np.asarray(im) < 250).any(axis=0))
            out.append(cols[-1] - cols[0] + 1)
        return np.array(out)

    assert widths("an upright narrow handwritten digit 1").min() >= 0.45 * 32
    assert widths("an upright narrow printed digit 1").min() < 0.45 * 32


def test_hand_font_writes_each_digit_in_its_allographs():
    from aa_generators.hand_font import ALLOGRAPHS, HandFont, hand_fonts

    fonts = hand_fonts()
    assert set(ALLOGRAPHS) == set(DIGITS) and len(fonts) == max(len(v) for v in ALLOGRAPHS.values())
    assert any(isinstance(f, HandFont) for f in glyph().fonts)
    drawn = lambda font, digit: np.asarray(font.draw(digit, 1, 128)) > 0  # noqa: E731
    assert not np.array_equal(drawn(fonts[0], "7"), drawn(fonts[1], "7"))  # plain and crossed
    crossed = drawn(fonts[1], "7")
    rows = np.flatnonzero(crossed.any(axis=1))
    middle = crossed[(rows[0] + rows[-1]) // 2 - 3 : (rows[0] + rows[-1]) // 2 + 4]
    assert middle.any(axis=0).sum() > 20  # the bar across the stem
    assert fonts[0].covers("7") and not fonts[0].covers("A")


def test_handwritten_prompts_are_drawn_with_a_hand_drawn_face_about_half_the_time():
    import random

    from aa_generators.style import read_style

    generator = glyph()
    installed = np.mean([f.handwritten for f in generator.fonts if f.covers("4")])
    rng = random.Random(0)
    share = lambda prompt: np.mean([generator.choose_font(read_style(prompt), "4", rng).handwritten for _ in range(400)])  # noqa: E731
    assert installed < 0.4  # hand-drawn faces are few among the installed fonts ...
    assert abs(share("a bold serif handwritten digit 4") - 0.5) < 0.1  # ... but half of handwriting
    assert share("a bold serif handwritten printed digit 4") == 0
    assert share("a bold serif digit 4") < 0.4
