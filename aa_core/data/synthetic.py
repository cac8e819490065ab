"""The synthetic source: an image folder with one subfolder per category and ``metadata.jsonl``.

Each metadata row names ``file_name`` (relative to the folder), ``label``, ``prompt``, ``seed``
and ``generator``: the layout ``datasets.load_dataset("imagefolder", data_dir=...)`` reads.
Images are written as they are made, so an interrupted generation resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

METADATA = "metadata.jsonl"


@dataclass(frozen=True)
class SyntheticImage:
    file_name: str
    label: str
    prompt: str
    seed: int
    generator: str


def plan(prompts: list[dict], images_per_class: int, seed: int, generator: str) -> list[SyntheticImage]:
    """Which image to make for each slot: class prompts are cycled, every image has its own seed."""
    by_label: dict[str, list[str]] = {}
    for prompt in prompts:
        by_label.setdefault(prompt["label"], []).append(prompt["text"])
    out = []
    for label, texts in by_label.items():
        for i in range(images_per_class):
            out.append(
                SyntheticImage(
                    file_name=f"{label}/{i:06d}.png",
                    label=label,
                    prompt=texts[i % len(texts)],
                    seed=seed * 1_000_003 + len(out),
                    generator=generator,
                )
            )
    return out


def write_metadata(root: Path, images: list[SyntheticImage]) -> None:
    with open(root / METADATA, "w") as f:
        for image in images:
            f.write(json.dumps(asdict(image)) + "\n")
