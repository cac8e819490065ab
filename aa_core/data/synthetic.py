"""The synthetic source: an image folder with one subfolder per category and ``metadata.jsonl``.

Each metadata row names ``file_name`` (relative to the folder), ``label``, ``prompt``, ``seed``
and ``generator``: the layout ``datasets.load_dataset("imagefolder", data_dir=...)`` reads.

An image's file name carries a key of everything that made it (the generator, its version and
options, the prompt and the seed): ``{label}/{slot:06d}-{key}.png``. A file whose name is not in
the plan was made by something else and is removed, so an image is always what its row says,
and resuming reuses only images made the same way.
"""

from __future__ import annotations

import hashlib
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


def image_seed(seed: int, label: str, slot: int) -> int:
    """A 31-bit seed per (run seed, category, slot): stable when the counts change."""
    return int(hashlib.sha256(f"{seed}/{label}/{slot}".encode()).hexdigest()[:8], 16) >> 1


def image_key(maker: dict, prompt: str, seed: int) -> str:
    """Identity of one image: what made it (``maker``: generator, version, options), the prompt, the seed."""
    return hashlib.sha256(json.dumps([maker, prompt, seed], sort_keys=True).encode()).hexdigest()[:12]


def plan(prompts: list[dict], images_per_class: int, seed: int, maker: dict) -> list[SyntheticImage]:
    """Which image to make for each slot: class prompts are cycled, every image has its own seed."""
    by_label: dict[str, list[str]] = {}
    for prompt in prompts:
        by_label.setdefault(prompt["label"], []).append(prompt["text"])
    out = []
    for label, texts in by_label.items():
        for slot in range(images_per_class):
            text, image = texts[slot % len(texts)], image_seed(seed, label, slot)
            name = f"{label}/{slot:06d}-{image_key(maker, text, image)}.png"
            out.append(SyntheticImage(file_name=name, label=label, prompt=text, seed=image, generator=maker["name"]))
    return out


def remove_strays(root: Path, images: list[SyntheticImage]) -> int:
    """Delete files under ``root`` that the plan does not name (stale images); return how many."""
    keep = {image.file_name for image in images} | {METADATA}
    strays = [p for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)) not in keep] if root.is_dir() else []
    for path in strays:
        path.unlink()
    return len(strays)


def write_metadata(root: Path, images: list[SyntheticImage]) -> None:
    from aa_core.run_folder import write_atomic

    write_atomic(root / METADATA, "".join(json.dumps(asdict(image)) + "\n" for image in images))
