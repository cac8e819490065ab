"""A run folder: every file a run writes, and which stages are complete for which inputs.

``stages.json`` maps each completed stage to the fingerprint of its inputs (its config slice,
the implementation and version it used, and its upstream stage's fingerprint). A stage whose
fingerprint is unchanged is reused; one that was interrupted has no entry and runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from aa_core.errors import AAError

# what each stage leaves in the run folder (``aa sweep`` shares them between run folders)
OUTPUTS = {
    "prompts": ("prompts.jsonl", "prompts_usage.json"),
    "generate": ("source", "dropped", "generation.json"),
    "adapt": ("source_only.safetensors", "adapt.safetensors", "selection.json", "train_log.jsonl"),
    "refine": ("split.csv", "split.json", "refine.safetensors"),
    "evaluate": ("predictions.csv", "metrics.json"),
}


def fingerprint(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder_digest(root: Path) -> str:
    """Identity of a folder's files (names, sizes, times): a regenerated source is a new source."""
    if not root.is_dir():
        return ""
    files = (p for p in root.rglob("*") if p.is_file())
    return fingerprint(sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old or the new file, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunFolder:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.prompts = self.root / "prompts.jsonl"
        self.prompts_usage = self.root / "prompts_usage.json"
        self.source = self.root / "source"
        self.dropped = self.root / "dropped"  # synthetic images an image filter dropped, and dropped.jsonl
        self.generation = self.root / "generation.json"
        self.split = self.root / "split.csv"
        self.split_stats = self.root / "split.json"
        self.selection = self.root / "selection.json"
        self.predictions = self.root / "predictions.csv"
        self.metrics = self.root / "metrics.json"
        self.log = self.root / "train_log.jsonl"
        self.unreadable = self.root / "unreadable.txt"
        self.checkpoints = self.root / "checkpoints"  # training states of the stage in progress (aa_core.training.checkpoint)
        self._state = self.root / "stages.json"

    def weights(self, name: str) -> Path:
        return self.root / f"{name}.safetensors"

    def create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise AAError(f"cannot create run folder {self.root}: {reason}; pass --out a folder you can write") from None
        if not os.access(self.root, os.W_OK):
            raise AAError(f"cannot write to run folder {self.root}; pass --out a folder you can write")

    def state(self) -> dict[str, dict]:
        return json.loads(self._state.read_text()) if self._state.exists() else {}

    def is_current(self, stage: str, fp: str) -> bool:
        return self.state().get(stage, {}).get("fingerprint") == fp

    def forget(self, stage: str) -> None:
        state = self.state()
        if state.pop(stage, None) is not None:
            write_atomic(self._state, json.dumps(state, indent=2))

    def complete(self, stage: str, fp: str, seconds: float) -> None:
        state = self.state()
        state[stage] = {"fingerprint": fp, "seconds": round(seconds, 3)}
        write_atomic(self._state, json.dumps(state, indent=2))

    def adopt(self, stage: str, entry: dict, donor: Path) -> None:
        """Record ``stage`` as complete with another run folder's entry (its outputs were shared here)."""
        state = self.state()
        state[stage] = {"fingerprint": entry["fingerprint"], "seconds": entry.get("seconds", 0.0), "shared_from": str(donor)}
        write_atomic(self._state, json.dumps(state, indent=2))

    def seconds(self) -> dict[str, float]:
        return {stage: entry["seconds"] for stage, entry in self.state().items()}
