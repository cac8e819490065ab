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


MAX_DEPTH = 16  # the answer asked for nests 2 deep; deeper is not it (and would recurse in json)
MAX_PROMPT = 1000  # characters: a prompt, not a page (text encoders read 77 tokens)


def objects(text: str) -> list[tuple[int, int, int]]:
    """Every balanced ``{...}`` of ``text``: ``(start, stop, nesting)`` in order of start (an outer
    object before those it holds). One pass with a stack of open brackets, strings skipped inside
    them (a quote in the prose around them is prose): linear in the text's length, however the
    brackets nest or fail to close."""
    spans, stack, in_string, escaped = [], [], False, False
    for j, c in enumerate(text):
        if in_string:
            in_string, escaped = (True, False) if escaped else (c != '"', c == "\\")
        elif c == '"' and stack:
            in_string = True
        elif c in "{[":
            stack.append([c, j, 1])
        elif c in "}]":
            if not stack or stack[-1][0] != "[{"[c == "}"]:
                stack.clear()  # brackets that do not pair: no object spans this point
                continue
            opener, start, nesting = stack.pop()
            if stack:
                stack[-1][2] = max(stack[-1][2], nesting + 1)
            if opener == "{":
                spans.append((start, j + 1, nesting))
    return sorted(spans)


def parse(text: str) -> list[str]:
    """The prompts of a reply: the first JSON object in it that has a ``prompts`` list of text.

    Objects nesting deeper than ``MAX_DEPTH`` are not decoded (the one asked for nests 2 deep): no
    character is decoded more than ``MAX_DEPTH`` times, and json never recurses past it."""
    problem = "no JSON object in the answer"
    for n, (start, stop, nesting) in enumerate(objects(text)):
        if nesting > MAX_DEPTH:
            if n == 0:
                problem = f"its JSON object nests {nesting} levels deep, more than {MAX_DEPTH}"
            continue
        try:
            prompts = Answer.model_validate(json.loads(text[start:stop])).prompts
        except (json.JSONDecodeError, ValidationError) as exc:
            if n == 0:  # the outermost object's problem is the one worth reporting
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
    dropped = {"missing_category": 0, "duplicate": 0, "too_long": 0}
    for text in candidates:
        if len(text) > MAX_PROMPT:
            dropped["too_long"] += 1
            continue
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
