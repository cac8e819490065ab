"""``prompts.jsonl``: the text prompts of a run, one ``{"text", "label"}`` row per line.

The prompts stage writes it; a user may edit it by hand between stages; generation reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from aa_core.contracts import Prompt
from aa_core.run_folder import write_atomic


def write_prompts(path: Path, prompts: list[Prompt]) -> None:
    write_atomic(path, "".join(json.dumps({"text": p.text, "label": p.label}) + "\n" for p in prompts))


def read_prompts(path: Path) -> list[dict]:
    """The rows, as the file has them now (hand edits included)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sample(path: Path, categories: list[str], per_class: int = 3) -> dict[str, list[str]]:
    """The first ``per_class`` prompts of each category."""
    out: dict[str, list[str]] = {c: [] for c in categories}
    for row in read_prompts(path):
        if len(out.setdefault(row["label"], [])) < per_class:
            out[row["label"]].append(row["text"])
    return out
