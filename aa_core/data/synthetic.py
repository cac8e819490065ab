"""The synthetic source's plan and its rows: which image each slot holds, and what made it.

The plan has one slot per image asked for: ``images_per_class`` slots per category, cycling
through the category's prompts, each slot with its own seed. A slot is made by attempts: attempt
0 uses the slot's seed, attempt ``k`` a seed derived from it; a new attempt is made when the
generator returned a blank image (a safety checker's black one) or an image filter dropped it.

An image's file name carries a key of everything that made it (the generator, its version and
options, the prompt and the attempt's seed): ``{label}/{slot:06d}-{key}.png``. A file whose name
no current row gives was made by something else and is removed, so an image is always what its
row says, and resuming reuses only images made the same way.

Each row of ``metadata.jsonl`` names ``file_name`` (relative to the folder), ``label``,
``prompt``, ``seed`` (the one that made it: the image is regenerated exactly from the row) and
``generator``: the layout ``datasets.load_dataset("imagefolder", data_dir=...)`` reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

METADATA = "metadata.jsonl"


def image_seed(seed: int, label: str, slot: int) -> int:
    """A 31-bit seed per (run seed, category, slot): stable when the counts change."""
    return int(hashlib.sha256(f"{seed}/{label}/{slot}".encode()).hexdigest()[:8], 16) >> 1


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of a slot's ``attempt``-th try: the slot's own seed first, then derived ones."""
    return seed if attempt == 0 else int(hashlib.sha256(f"{seed}/attempt/{attempt}".encode()).hexdigest()[:8], 16) >> 1


def image_key(maker: dict, prompt: str, seed: int) -> str:
    """Identity of one image: what made it (``maker``: generator, version, options), the prompt, the seed."""
    return hashlib.sha256(json.dumps([maker, prompt, seed], sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Slot:
    """The ``index``-th image of ``label``, drawn from ``prompt``; ``seed`` is its first attempt's."""

    label: str
    index: int
    prompt: str
    seed: int

    @property
    def key(self) -> tuple[str, int]:
        return self.label, self.index

    def file_name(self, maker: dict, attempt: int) -> str:
        return f"{self.label}/{self.index:06d}-{image_key(maker, self.prompt, attempt_seed(self.seed, attempt))}.png"


@dataclass(frozen=True)
class SyntheticImage:
    """One row: an image kept in ``source/`` (``metadata.jsonl``) or dropped (``dropped.jsonl``)."""

    file_name: str  # relative to its folder; "" for a blank image, which is not kept
    label: str
    prompt: str
    seed: int  # the seed that made it
    generator: str
    slot: int
    attempt: int = 0  # earlier attempts of this slot were blank or dropped
    blank: int = 0  # earlier attempts that came back blank (a safety checker's black image)
    filtered: int = 0  # earlier attempts an image filter dropped
    filters: str = ""  # fingerprint of the image filters it was checked by ("" for none)
    reason: str = ""  # of a dropped image: why

    @property
    def key(self) -> tuple[str, int]:
        return self.label, self.slot

    @classmethod
    def of(cls, data: dict) -> SyntheticImage:
        names = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in names}
        if "slot" not in data:  # a row from before attempts existed: the slot is in the name, the attempt was the first
            data["slot"] = int(Path(data["file_name"]).name.split("-")[0])
        return cls(**data)

    def as_dict(self) -> dict:
        return asdict(self)


def plan(prompts: list[dict], images_per_class: int, seed: int) -> list[Slot]:
    """The slots: class prompts are cycled, every slot has its own seed."""
    by_label: dict[str, list[str]] = {}
    for prompt in prompts:
        by_label.setdefault(prompt["label"], []).append(prompt["text"])
    return [
        Slot(label, index, texts[index % len(texts)], image_seed(seed, label, index))
        for label, texts in by_label.items()
        for index in range(images_per_class)
    ]


def read_rows(path: Path) -> list[SyntheticImage]:
    """The rows of a ``.jsonl`` file; none if it is missing."""
    if not path.is_file():
        return []
    return [SyntheticImage.of(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def write_rows(path: Path, rows: list[SyntheticImage]) -> None:
    from aa_core.run_folder import write_atomic

    write_atomic(path, "".join(json.dumps(row.as_dict()) + "\n" for row in rows))
