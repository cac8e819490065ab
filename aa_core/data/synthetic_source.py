"""The synthetic source on disk, and its one owner: images, their rows, and the journals.

``SyntheticSource`` is the only code that writes or removes anything under ``source/`` and
``dropped/``. The generation stage asks it what is left to do (``work``), hands it each finished
batch (``record``) and settles it before and after (``settle``, main process).

While generating, every process appends the rows of each finished batch to its own journal
(``source/.journal/<host>-<pid>.jsonl``, flushed to disk), after the batch's images are in place
under their final names: a process killed at any moment loses at most the batch in flight, and
a torn last line is ignored. ``settle`` folds the journals into ``source/metadata.jsonl`` (kept
images, in plan order) and ``dropped/dropped.jsonl`` (blank and filtered attempts), keeps only
rows the current plan and maker would write with their image present, and deletes every file no
row names.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from aa_core.data.synthetic import METADATA, Slot, SyntheticImage, attempt_seed, read_rows, write_rows

JOURNALS = ".journal"


@dataclass
class Work:
    """One attempt to fill a slot; ``existing`` when the image is on disk and only needs checking."""

    slot: Slot
    attempt: int = 0
    blank: int = 0
    filtered: int = 0
    existing: bool = False

    @property
    def seed(self) -> int:
        return attempt_seed(self.slot.seed, self.attempt)

    def again(self, blank: bool) -> Work:
        """The next attempt after this one came back blank or was dropped."""
        return Work(self.slot, self.attempt + 1, self.blank + blank, self.filtered + (not blank))


@dataclass
class Verdict:
    """What became of one attempt: its image (``None`` when blank) and why it was dropped (``None``: kept)."""

    work: Work
    image: Image.Image | None
    reason: str | None


class SyntheticSource:
    """The synthetic source's files against what the plan asks for."""

    def __init__(self, source: Path, dropped: Path, slots: list[Slot], maker: dict, filters: str):
        self.source = source  # the image folder: one subfolder per category, metadata.jsonl
        self.dropped_dir = dropped  # images an image filter dropped, listed in dropped.jsonl
        self.slots = slots
        self.maker = maker  # what makes an image (generator, version, options): part of its file name
        self.filters = filters  # fingerprint of the active image filters; "" when none is on
        self.kept: dict[tuple[str, int], SyntheticImage] = {}
        self.dropped: list[SyntheticImage] = []
        self._journal: Path | None = None

    @property
    def dropped_list(self) -> Path:
        return self.dropped_dir / "dropped.jsonl"

    def file_name(self, work: Work) -> str:
        return work.slot.file_name(self.maker, work.attempt)

    # --- reading back ------------------------------------------------------------------------

    def read(self) -> None:
        """Load the settled rows (``metadata.jsonl``, ``dropped.jsonl``) and any journal, and keep the valid ones."""
        journal_kept, journal_dropped = self._read_journals()
        slots = {slot.key: slot for slot in self.slots}
        self.kept = {}
        for row in [*read_rows(self.source / METADATA), *journal_kept]:  # later rows win
            slot = slots.get(row.key)
            if slot and row.prompt == slot.prompt and row.file_name == slot.file_name(self.maker, row.attempt):
                if (self.source / row.file_name).is_file():
                    self.kept[row.key] = row
        unique = {}
        for row in [*read_rows(self.dropped_list), *journal_dropped]:
            slot = slots.get(row.key)
            if not slot or row.prompt != slot.prompt or row.seed != attempt_seed(slot.seed, row.attempt):
                continue
            if row.file_name:  # filtered: by the filters now on, with its image kept aside
                if row.filters != self.filters or row.file_name != slot.file_name(self.maker, row.attempt):
                    continue
                if not (self.dropped_dir / row.file_name).is_file():
                    continue
            kept = self.kept.get(row.key)
            if kept is None or row.attempt < kept.attempt:
                unique[(*row.key, row.attempt)] = row
        self.dropped = list(unique.values())

    def _read_journals(self) -> tuple[list[SyntheticImage], list[SyntheticImage]]:
        """Kept and dropped rows of every process's journal; a torn line is skipped."""
        kept, dropped = [], []
        for path in sorted((self.source / JOURNALS).glob("*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the line a kill cut short
                    continue
                (kept if "kept" in record else dropped).append(SyntheticImage.of(record.get("kept") or record["dropped"]))
        return kept, dropped

    def settle(self) -> None:
        """(Main process.) Fold the journals into the two lists and delete every file no row names."""
        self.read()
        order = {slot.key: i for i, slot in enumerate(self.slots)}
        self.source.mkdir(parents=True, exist_ok=True)
        write_rows(self.source / METADATA, sorted(self.kept.values(), key=lambda r: order[r.key]))
        self.dropped.sort(key=lambda r: (order[r.key], r.attempt))
        if self.dropped or self.dropped_list.exists():
            self.dropped_dir.mkdir(parents=True, exist_ok=True)
            write_rows(self.dropped_list, self.dropped)
        shutil.rmtree(self.source / JOURNALS, ignore_errors=True)
        remove_unnamed(self.source, {row.file_name for row in self.kept.values()} | {METADATA})
        remove_unnamed(self.dropped_dir, {row.file_name for row in self.dropped if row.file_name} | {self.dropped_list.name})

    # --- what is left to do ------------------------------------------------------------------

    def work(self, retries: int) -> list[Work]:
        """Slots still to fill, in plan order: an image to check with the filters now on, or a next attempt."""
        tried: dict[tuple[str, int], list[SyntheticImage]] = {}
        for row in self.dropped:
            tried.setdefault(row.key, []).append(row)
        out = []
        for slot in self.slots:
            kept = self.kept.get(slot.key)
            if kept is not None:
                if self.filters and kept.filters != self.filters:
                    out.append(Work(slot, kept.attempt, kept.blank, kept.filtered, existing=True))
                continue
            earlier = tried.get(slot.key, [])
            attempt = 1 + max((row.attempt for row in earlier), default=-1)
            if attempt <= retries:
                blank = sum(1 for row in earlier if not row.file_name)
                out.append(Work(slot, attempt, blank, len(earlier) - blank))
        return out

    def image(self, work: Work) -> Image.Image:
        """The image on disk of an ``existing`` attempt."""
        with Image.open(self.source / self.file_name(work)) as image:
            return image.copy()

    # --- writing -------------------------------------------------------------------------------

    def record(self, verdicts: list[Verdict]) -> None:
        """Put a finished batch in place: kept images under ``source/``, filtered ones under
        ``dropped/`` (a blank one is not kept), then journal every row at once."""
        kept, dropped = [], []
        for v in verdicts:
            if v.reason is None:
                kept.append(self._keep(v.work, v.image))
            else:
                dropped.append(self._set_aside(v.work, v.image, v.reason))
        self._journal_rows(kept, dropped)

    def _row(self, work: Work, file_name: str, reason: str = "") -> SyntheticImage:
        return SyntheticImage(
            file_name=file_name, label=work.slot.label, prompt=work.slot.prompt, seed=work.seed, generator=self.maker["name"],
            slot=work.slot.index, attempt=work.attempt, blank=work.blank, filtered=work.filtered, filters=self.filters, reason=reason,
        )  # fmt: skip

    def _keep(self, work: Work, image: Image.Image) -> SyntheticImage:
        name = self.file_name(work)
        if not work.existing:
            write_png(image, self.source / name)
        return self._row(work, name)

    def _set_aside(self, work: Work, image: Image.Image | None, reason: str) -> SyntheticImage:
        if image is None:
            return self._row(work, "", reason)
        name = self.file_name(work)
        path = self.dropped_dir / name
        if work.existing:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.source / name, path)
        else:
            write_png(image, path)
        return self._row(work, name, reason)

    def _journal_rows(self, kept: list[SyntheticImage], dropped: list[SyntheticImage]) -> None:
        """Append to this process's journal, flushed to disk before returning."""
        lines = [json.dumps({"kept": row.as_dict()}) for row in kept] + [json.dumps({"dropped": row.as_dict()}) for row in dropped]
        if not lines:
            return
        if self._journal is None:
            folder = self.source / JOURNALS
            folder.mkdir(parents=True, exist_ok=True)
            self._journal = folder / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        with open(self._journal, "a") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # --- what it holds -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Kept images per category, in plan order."""
        out = {slot.label: 0 for slot in self.slots}
        for row in self.kept.values():
            out[row.label] += 1
        return out


def write_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` under ``path`` only once complete: a reader never finds half an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def remove_unnamed(root: Path, names: set[str]) -> int:
    """Delete the files under ``root`` whose relative path is not in ``names`` (stale or half-written); return how many."""
    if not root.is_dir():
        return 0
    strays = [p for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)) not in names]
    for path in strays:
        path.unlink()
    return len(strays)
