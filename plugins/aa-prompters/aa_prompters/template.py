"""template: combinatorial prompts, category x domain x style words, deterministic per seed.

Every combination of one word per style axis (an empty word leaves the axis out) is a style;
styles are shuffled with the seed and each category takes ``per_class`` of them in turn, so
prompts differ within a class and every class sees the same mix of styles.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aa_core.api import Prompt, Prompter

DEFAULT_STYLES = {
    "family": ["", "serif", "sans-serif", "monospace"],
    "weight": ["light", "regular", "bold"],
    "slant": ["upright", "slanted", "italic"],
    "width": ["narrow", "", "wide"],
}


class TemplateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field("a {style} {domain} {category}", description="uses {style}, {domain}, {category}")
    styles: dict[str, list[str]] = Field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_STYLES.items()})

    @field_validator("template")
    @classmethod
    def _names_category(cls, value: str) -> str:
        if "{category}" not in value:
            raise ValueError("the template must contain {category}")
        return value


class TemplatePrompter(Prompter):
    """Prompts from a template and every combination of style words."""

    Options = TemplateOptions

    def prompts(self, categories: Sequence[str], domain: str, per_class: int, seed: int) -> list[Prompt]:
        axes = [words or [""] for words in self.options.styles.values()]
        styles = [" ".join(w for w in combo if w) for combo in itertools.product(*axes)]
        random.Random(seed).shuffle(styles)
        out = []
        for k, category in enumerate(categories):
            for i in range(per_class):
                style = styles[(k + i * len(categories)) % len(styles)]
                text = self.options.template.format(style=style, domain=domain, category=category)
                out.append(Prompt(text=" ".join(text.split()), label=category))
        return out
