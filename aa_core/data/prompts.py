"""``prompts.jsonl``: the text prompts of a run, one ``{"text", "label"}`` row per line.

The prompts stage writes it; a user may edit it by hand between stages; generation reads it.
Reading checks every line, as a hand edit may break one: a label names the folder its images go
to, so a label that is not a category (``../../x``) is refused before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from aa_core.contracts import Prompt
from aa_core.errors import ConfigError
from aa_core.run_folder import write_atomic

MAX_PROMPT = 1000  # characters: a prompt, not a page (text encoders read 77 tokens); longer is a prompter's bug


def too_long(text: str, label: str, where: str) -> str | None:
    """What is wrong with a prompt longer than ``MAX_PROMPT``, naming its category; None for one that is not."""
    if len(text) <= MAX_PROMPT:
        return None
    return (f"{where}: a prompt of category {label!r} is {len(text)} characters long, more than {MAX_PROMPT}; "
            "shorten it, or fix what wrote it")  # fmt: skip


def write_prompts(path: Path, prompts: list[Prompt]) -> None:
    write_atomic(path, "".join(json.dumps({"text": p.text, "label": p.label}) + "\n" for p in prompts))


def read_prompts(path: Path, categories: list[str] | None = None) -> list[dict]:
    """The rows, as the file has them now (hand edits included); with ``categories``, each label must be one."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not (isinstance(row, dict) and isinstance(row.get("text"), str) and isinstance(row.get("label"), str)):
            raise ConfigError(f'{path} line {number} is not a prompt; write it as {{"text": "...", "label": "<category>"}} or delete it')
        if categories is not None and row["label"] not in categories:
            shown = ", ".join(categories if len(categories) <= 4 else [*categories[:3], "...", categories[-1]])
            raise ConfigError(
                f"{path} line {number}: label {row['label']!r} is not a category ({shown}); "
                "change it to one of task.categories or delete the line"
            )
        problem = too_long(row["text"], row["label"], f"{path} line {number}")
        if problem:
            raise ConfigError(problem)
        rows.append(row)
    return rows


def sample(path: Path, categories: list[str], per_class: int = 3) -> dict[str, list[str]]:
    """The first ``per_class`` prompts of each category."""
    out: dict[str, list[str]] = {c: [] for c in categories}
    for row in read_prompts(path):
        if len(out.setdefault(row["label"], [])) < per_class:
            out[row["label"]].append(row["text"])
    return out
