"""The answer the model must give, and what is kept of it.

The model answers ``{"prompts": ["...", ...]}``: the whole reply in JSON mode, somewhere in its
text from a provider without one (prose or a code fence around the object). A prompt is kept when it names its
category or one of the synonyms the user gives (whole words, any case), and when it is neither
an exact nor a near duplicate of a prompt kept before: two prompts are near duplicates when the
sets of their lower-case words overlap by ``near`` or more (Jaccard similarity).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompts: list[str] = Field(min_length=1)


class MalformedAnswer(ValueError):
    """The reply was not the JSON object asked for."""


def parse(text: str) -> list[str]:
    """The prompts of a reply: the first JSON object in it that has a ``prompts`` list of text."""
    decoder, problem = json.JSONDecoder(), "no JSON object in the answer"
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            prompts = Answer.model_validate(decoder.raw_decode(text, start)[0]).prompts
        except (json.JSONDecodeError, ValidationError) as exc:
            if start == text.find("{"):  # the outermost object's problem is the one worth reporting
                problem = str(exc).splitlines()[0]
            continue
        return [p.strip() for p in prompts if p.strip()]
    raise MalformedAnswer(problem)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def names(category: str, synonyms: Sequence[str] = ()) -> list[re.Pattern]:
    """Whole-word patterns for a category (underscores read as spaces) and its synonyms."""
    return [re.compile(r"\b" + re.escape(n.replace("_", " ").lower()) + r"\b") for n in (category, *synonyms)]


def keep(candidates: Iterable[str], kept: list[str], category: str, synonyms: Sequence[str], near: float) -> tuple[list[str], dict]:
    """Add to ``kept`` each candidate that names the category and repeats nothing; count the rest."""
    patterns = names(category, synonyms)
    dropped = {"missing_category": 0, "duplicate": 0}
    for text in candidates:
        flat = " ".join(text.replace("_", " ").lower().split())
        if not any(p.search(flat) for p in patterns):
            dropped["missing_category"] += 1
            continue
        w = words(flat)
        if any(w == words(k) or len(w & words(k)) / max(len(w | words(k)), 1) >= near for k in kept):
            dropped["duplicate"] += 1
            continue
        kept.append(" ".join(text.split()))
    return kept, dropped
