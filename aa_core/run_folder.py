"""A run folder: every file a run writes, and which stages are complete for which inputs.

``stages.json`` maps each completed stage to the fingerprint of its inputs (its config slice,
the implementation and version it used, and its upstream stage's fingerprint). A stage whose
fingerprint is unchanged is reused; one that was interrupted has no entry and runs again.

A run writes only into a folder aa made: an existing folder that holds anything else is refused
(``claim``), unless adopted, and then every entry of it a run would write over is moved into
``stale/`` first. Nothing a run did not write is ever deleted: what it no longer wants goes to
``stale/`` too (``set_aside``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aa_core.errors import AAError
from aa_core.lock import NAME as LOCK

logger = logging.getLogger("aa")

# what each stage leaves in the run folder (``aa sweep`` shares them between run folders)
OUTPUTS = {
    "prompts": ("prompts.jsonl", "prompts_usage.json"),
    "generate": ("source", "dropped", "generation.json"),
    "adapt": ("source_only.safetensors", "adapt.safetensors", "selection.json", "train_log.jsonl"),
    "refine": ("split.csv", "split.json", "refine.safetensors"),
    "evaluate": ("predictions.csv", "metrics.json"),
}
TRAINED = ("source_only", "adapt", "refine")  # the parts that save a network (``<part>.safetensors``), in order
# what a run reports, in order: the zero-shot row (with a VLM), the user's classifier as it came
# (``init``, with ``model.init`` where source-only training changes it; nothing saved, it is the
# checkpoint itself), then each network trained
MODELS = ("zero_shot", "init", *TRAINED)
# what must still be there for a completed stage to be reused: one deleted by hand makes it run again
REQUIRED = {
    "prompts": ("prompts.jsonl",),
    "generate": ("source", "generation.json"),
    "source_only": ("source_only.safetensors",),
    "zero_shot": ("zero_shot.safetensors", "zero_shot_head.safetensors"),
    "adapt": ("source_only.safetensors", "adapt.safetensors"),
    "refine": ("split.csv", "split.json", "refine.safetensors"),
    "evaluate": ("predictions.csv", "metrics.json"),
}
# the part of a stage recorded on its own, so a rerun that changes only the rest of the stage reuses
# it: the source-only model, the first part of adapt (one serves every UDA algorithm)
# and the zero-shot row (``aa_core.zero_shot``), computed where first needed (adapt's start), read by the stages after
PARTS = {"source_only": "adapt", "zero_shot": "adapt"}
LINKED = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".safetensors"}  # written once, then only replaced
STALE = "stale"  # what a run set aside rather than delete: files it no longer wants, an adopted folder's
# every name aa writes at the top of a run folder (``aa sweep`` its log, ``aa report`` its page): an
# adopted folder's entries of these names are set aside, as the run would write over them
WRITTEN = frozenset(
    {name for names in OUTPUTS.values() for name in names}
    | {"zero_shot.safetensors", "zero_shot_head.safetensors"}
    | {"config.yaml", "stages.json", "unreadable.txt", "checkpoints", "tracking", LOCK, "sweep.log", "report.html", "error.log"}
)
# what a run folder may hold before its config.yaml: the lock, the preflight's list, an ``aa sweep`` member's log
EARLY = frozenset({LOCK, "unreadable.txt", "sweep.log", STALE})


def fingerprint(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (links to files included), walked without recursion, so a tree of
    any depth is walked; links to folders are not followed, so a loop of links or a link to ``/``
    takes the walk nowhere."""
    pending = [root]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:  # unreadable, or gone meanwhile
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file():
                yield Path(entry.path)


def folder_digest(root: Path) -> str:
    """Identity of a folder's files (names, sizes, times): a regenerated source is a new source."""
    if not root.is_dir():
        return ""
    stats = []
    for p in walk_files(root):
        try:
            info = p.stat()
        except OSError:
            continue
        stats.append((str(p.relative_to(root)), info.st_size, info.st_mtime_ns))
    return fingerprint(sorted(stats))


def file_digest(path: str | Path) -> str:
    """Identity of a file's contents (SHA-256, streamed): for an implementation's ``inputs``.
    "" where there is no such file, so that making it changes the digest."""
    path = Path(path)
    if not path.is_file():
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def strict_json(data: Any) -> str:
    """``data`` as strict JSON (every reader parses it): a NaN or infinity becomes ``null``."""

    def finite(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=2, allow_nan=False)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old or the new file, never a part,
    even after a crash of the machine: the bytes reach the disk before the rename publishes them."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)  # never through a planted link
    try:
        with open(fd, "w", newline="", encoding="utf-8") as f:  # the text as given (CSV's \r\n too)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, text that is not UTF-8, Ctrl-C: no temporary file stays behind
        tmp.unlink(missing_ok=True)
        raise


def free_name(path: Path) -> Path:
    """``path``, or the first of ``name.1.ext``, ``name.2.ext``... beside it that nothing holds."""
    candidate, n = path, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return candidate


def set_aside(path: Path, to: Path) -> Path:
    """Move ``path`` (a file or a folder) to ``to``, or beside it under a free name: nothing is overwritten."""
    target = free_name(to)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(path, target)  # within the run folder: one file system, so a rename, never a copy
    return target


def written_by_aa(config: Path) -> bool:
    """Whether ``config`` is a run's record (``write_config`` adds the ``environment`` it ran in), not a user's YAML."""
    import yaml

    try:
        record = yaml.safe_load(config.read_text())
    except (OSError, ValueError, yaml.YAMLError):  # unreadable, not text, not YAML: not aa's
        return False
    return isinstance(record, dict) and isinstance(record.get("environment"), dict) and "adapt_anything" in record["environment"]


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
        self.zero_shot = self.root / "zero_shot.safetensors"  # the zero-shot row's logits of every target image
        self.zero_shot_head = self.root / "zero_shot_head.safetensors"  # its classifier: text weights, scale, bias
        self.predictions = self.root / "predictions.csv"
        self.metrics = self.root / "metrics.json"
        self.log = self.root / "train_log.jsonl"
        self.unreadable = self.root / "unreadable.txt"
        self.checkpoints = self.root / "checkpoints"  # training states of the stage in progress (aa_core.training.checkpoint)
        self.stale = self.root / STALE
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

    def foreign(self) -> list[str]:
        """The entries that make this existing folder not a run folder (sorted); none for a run folder, or an empty or new one.

        A run folder holds aa's ``config.yaml``, or its ``stages.json`` (an ``aa sweep`` member with
        stages shared in), or, before either is written (a run killed early, a sweep member not
        started), nothing but what aa writes first. A ``config.yaml`` that is not aa's record is
        foreign: the run would write over it.
        """
        if not self.root.is_dir():
            return []
        names = sorted(os.listdir(self.root))
        if os.path.lexists(self.config):
            return [] if written_by_aa(self.config) else ["config.yaml", *(n for n in names if n not in WRITTEN and n != STALE)]
        if is_state(self._state):
            return []
        return [n for n in names if n not in EARLY and not temporary(n)]

    def claim(self, adopt: bool = False, move: bool = True) -> None:
        """Refuse a folder aa did not make, before anything is written; with ``adopt``, run in it, and
        (when ``move``: the main process) set aside into ``stale/`` every entry the run could write over."""
        strangers = self.foreign()
        if not strangers:
            return
        if not adopt:
            shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
            raise AAError(
                f"{self.root} is not an aa run folder and holds files aa did not write ({shown}); "
                f"pass --out a new or empty folder, or add --adopt to `aa run` to run there (what it would overwrite moves to {self.stale})"
            )
        if self.stale.exists() and not self.stale.is_dir():
            raise AAError(f"{self.stale} is a file, and an adopted folder's files are set aside in a folder of that name; rename it")
        if not move:
            return
        # aa's own lock stays: another aa process may hold it
        ours = {LOCK} if is_lock(self.root / LOCK) else set()
        moved = [set_aside(self.root / n, self.stale / n) for n in sorted(os.listdir(self.root)) if n in WRITTEN - ours]
        logger.warning(
            "adopted %s: %d entr%s that the run writes moved to %s, the rest left in place",
            self.root, len(moved), "y" if len(moved) == 1 else "ies", self.stale,
        )  # fmt: skip

    def state(self) -> dict[str, dict]:
        return json.loads(self._state.read_text()) if self._state.exists() else {}

    def is_current(self, stage: str, fp: str) -> bool:
        """Whether ``stage`` completed for the inputs ``fp`` and what it left is still there."""
        if self.state().get(stage, {}).get("fingerprint") != fp:
            return False
        return all((self.root / name).exists() for name in REQUIRED.get(stage, ()))

    # stages.json is written by the pipeline alone (``aa_core.pipeline``: a stage it ran, a part a
    # stage reports done, a stage shared from another run folder): these two are its pen
    def mark_stale(self, key: str) -> None:
        """Drop ``key``'s entry: the stage (or part) runs again."""
        state = self.state()
        if state.pop(key, None) is not None:
            write_atomic(self._state, json.dumps(state, indent=2))

    def mark_complete(self, key: str, fp: str, seconds: float, shared_from: Path | None = None) -> None:
        """Record stage (or part) ``key`` complete for the inputs ``fp``, here or in run folder ``shared_from``."""
        state = self.state()
        state[key] = {"fingerprint": fp, "seconds": round(seconds, 3)} | ({"shared_from": str(shared_from)} if shared_from else {})
        write_atomic(self._state, json.dumps(state, indent=2))

    def seconds(self) -> dict[str, float]:
        return {stage: entry["seconds"] for stage, entry in self.state().items()}


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link (images, weights) or copy (the rest) ``src`` to ``dst``, a folder file by file.

    A hard link only where the pipeline replaces a file whole, never rewrites it: a later change in
    one run folder never reaches the other."""
    if src.is_dir():
        for path in src.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                link_or_copy(path, dst / path.relative_to(src))
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if src.suffix in LINKED:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or one without hard links
            pass
    shutil.copy2(src, dst)  # copy2 keeps the time: folder digests stay equal


def is_lock(path: Path) -> bool:
    """Whether ``path`` is aa's lock file: empty, or the record of its holder (``aa_core.lock``)."""
    try:
        text = path.read_text()
        return not text or "pid" in _json_object(text)
    except (OSError, ValueError):
        return False


def is_state(path: Path) -> bool:
    """Whether ``path`` is a ``stages.json`` aa wrote: each stage's fingerprint (``RunFolder.mark_complete``)."""
    try:
        state = _json_object(path.read_text())
    except (OSError, ValueError):
        return False
    return all(isinstance(entry, dict) and "fingerprint" in entry for entry in state.values())


def _json_object(text: str) -> dict:
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError("not a JSON object")
    return loaded


def temporary(name: str) -> bool:
    """A ``write_atomic`` temporary (``.<name>.<pid>.tmp``) a run killed mid-write leaves."""
    parts = name.split(".")
    return name.startswith(".") and len(parts) >= 4 and parts[-1] == "tmp" and parts[-2].isdigit() and ".".join(parts[1:-2]) in WRITTEN
