"""template: combinatorial prompts, category x domain x built-in words, deterministic per seed.

The domain's name picks a kind (``vocabularies``: handwriting, product, clipart, sketch, art,
rendering, else photo) with its own axes of words (contexts, viewpoints, lighting, styles...) and
a template. Every combination of one word per axis is a style; styles are shuffled with the seed
and each category takes ``per_class`` of them in turn, so prompts differ within a class and every
class sees the same mix. ``kind``, ``template`` and ``styles`` override the choice.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator

from aa_core.api import Options, Prompt, Prompter
from aa_prompters.vocabularies import VOCABULARIES, kind_of

AN_BEFORE_VOWEL = re.compile(r"\b([Aa]) ([aeiouAEIOU])")  # "a alarm clock" -> "an alarm clock"
Kind = Literal["handwriting", "product", "clipart", "sketch", "art", "rendering", "photo"]


class TemplateOptions(Options):
    kind: Kind | None = Field(None, description="the kind of domain; none: read from the domain's name")
    template: str | None = Field(None, description="uses {style}, {domain}, {category}; none: the kind's")
    styles: dict[str, list[str]] | None = Field(None, description="axes of words; none: the kind's")

    @field_validator("template")
    @classmethod
    def _names_category(cls, value: str | None) -> str | None:
        if value is not None and "{category}" not in value:
            raise ValueError("the template must contain {category}")
        return value


class TemplatePrompter(Prompter):
    """Prompts from a template and every combination of the domain kind's words."""

    Options = TemplateOptions

    def prompts(self, categories: Sequence[str], domain: str, per_class: int, seed: int) -> list[Prompt]:
        vocabulary = VOCABULARIES[self.options.kind or kind_of(domain)]
        template = self.options.template or vocabulary.template
        axes = [words or [""] for words in (self.options.styles or vocabulary.axes).values()]
        styles = [vocabulary.joiner.join(w for w in combo if w) for combo in itertools.product(*axes)]
        random.Random(seed).shuffle(styles)
        out = []
        for k, category in enumerate(categories):
            name = category.replace("_", " ")
            for i in range(per_class):
                style = styles[(k + i * len(categories)) % len(styles)]
                text = " ".join(template.format(style=style, domain=domain, category=name).split()).rstrip(", ")
                out.append(Prompt(text=AN_BEFORE_VOWEL.sub(r"\1n \2", text), label=category))
        return out
