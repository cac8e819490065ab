"""The synthetic source on disk, and its one owner: images, their rows, and the journals.

``SyntheticSource`` is the only code that writes or removes anything under ``source/`` and
``dropped/``. The generation stage asks it what is left to do (``work``), hands it each finished
batch (``record``) and settles it before and after (``settle``, main process).

While generating, every process appends the rows of each finished batch to its own journal
(``source/.journal/<host>-<pid>.jsonl``, flushed to disk), after the batch's images are in place
under their final names: a process killed at any moment loses at most the batch in flight, and
a torn last line is ignored. ``settle`` folds the journals into ``source/metadata.jsonl`` (kept
images, in plan order) and ``dropped/dropped.jsonl`` (blank and filtered attempts), keeps only
rows the current plan and maker would write with their image present, and moves every other file
into the run folder's ``stale/`` (stale images, a user's files): it deletes only what the stage
itself left half-written (the journals once folded, an image or a list not yet renamed). An image
a killed process put in place before journaling it stays where it is, and is checked rather than
made again.

What becomes of a file, in the words the code uses (the names on disk, ``dropped/`` and
``dropped.jsonl``, are older than these words and stay as users know them):

* **kept**: an attempt's image in ``source/``, its row in ``metadata.jsonl``;
* **discarded**: an attempt not kept, its row in ``dropped.jsonl``; either **blank** (the maker
  gave a blank image: nothing on disk) or **filtered** (an image filter turned it down: its
  image under ``dropped/``, the *filtered folder*);
* **set aside**: a file no row names, moved to ``stale/`` (``run_folder.set_aside``), never deleted;
* **brought back**: a filtered image with no row (a process killed between the rename and the
  journal) returned to ``source/`` to be judged again;
* **half-written**: what the stage itself left unrenamed when killed, the only thing deleted.

An image is written to a temporary file, flushed to disk, then renamed, and each batch's folders
are flushed before its rows are journaled: after a crash of the machine, a journaled row's image
is on disk whole.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from aa_core.data.synthetic import METADATA, Slot, SyntheticImage, attempt_seed, read_rows, write_rows
from aa_core.durable import sync_entries
from aa_core.run_folder import set_aside, walk_files

JOURNALS = ".journal"
# what the stage leaves half-written when killed: an image ``write_png`` had not renamed yet, a
# row list ``write_atomic`` had not (``.<name>.<pid>.tmp``); it wrote them, so it may delete them
HALF_WRITTEN = re.compile(r"\.\d{6,}-[0-9a-f]{12}\.png|\.(metadata|dropped)\.jsonl\.\d+\.tmp")

logger = logging.getLogger("aa")


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
        """The next attempt after this one came back blank or was filtered."""
        return Work(self.slot, self.attempt + 1, self.blank + blank, self.filtered + (not blank))


@dataclass
class Verdict:
    """What became of one attempt: its image (``None`` when blank) and why it was discarded (``None``: kept)."""

    work: Work
    image: Image.Image | None
    reason: str | None


class SyntheticSource:
    """The synthetic source's files against what the plan asks for."""

    def __init__(self, source: Path, filtered: Path, slots: list[Slot], maker: dict, filters: str, stale: Path):
        self.source = source  # the image folder: one subfolder per category, metadata.jsonl
        self.filtered_dir = filtered  # ``dropped/``: the images of filtered attempts, and the list of discarded ones
        self.stale = stale  # where files no row names go (``stale/source/...``, ``stale/dropped/...``)
        self.slots = slots
        self.maker = maker  # what makes an image (generator, version, options): part of its file name
        self.filters = filters  # fingerprint of the active image filters; "" when none is on
        self.kept: dict[tuple[str, int], SyntheticImage] = {}
        self.discarded: list[SyntheticImage] = []  # rows of the attempts not kept: blank, or filtered
        self._journal: Path | None = None

    @property
    def discarded_list(self) -> Path:
        return self.filtered_dir / "dropped.jsonl"

    def file_name(self, work: Work) -> str:
        return work.slot.file_name(self.maker, work.attempt)

    # --- reading back ------------------------------------------------------------------------

    def read(self) -> None:
        """Load the settled rows (``metadata.jsonl``, ``dropped.jsonl``) and any journal, and keep the valid ones."""
        journal_kept, journal_discarded = self._read_journals()
        slots = {slot.key: slot for slot in self.slots}
        self.kept = {}
        for row in [*read_rows(self.source / METADATA), *journal_kept]:  # later rows win
            slot = slots.get(row.key)
            if slot and row.prompt == slot.prompt and row.file_name == slot.file_name(self.maker, row.attempt):
                if (self.source / row.file_name).is_file():
                    self.kept[row.key] = row
        unique = {}
        for row in [*read_rows(self.discarded_list), *journal_discarded]:
            slot = slots.get(row.key)
            if not slot or row.prompt != slot.prompt or row.seed != attempt_seed(slot.seed, row.attempt):
                continue
            if row.file_name:  # filtered: by the filters now on, with its image kept aside
                if row.filters != self.filters or row.file_name != slot.file_name(self.maker, row.attempt):
                    continue
                if not (self.filtered_dir / row.file_name).is_file():
                    continue
            kept = self.kept.get(row.key)
            if kept is None or row.attempt < kept.attempt:
                unique[(*row.key, row.attempt)] = row
        self.discarded = list(unique.values())

    def _read_journals(self) -> tuple[list[SyntheticImage], list[SyntheticImage]]:
        """Kept and discarded rows of every process's journal (``{"kept": row}``, ``{"dropped": row}``); a torn line is skipped."""
        kept, discarded = [], []
        for path in sorted((self.source / JOURNALS).glob("*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # the line a kill cut short
                    continue
                (kept if "kept" in record else discarded).append(SyntheticImage.of(record.get("kept") or record["dropped"]))
        return kept, discarded

    def settle(self, retries: int) -> None:
        """(Main process.) Fold the journals into the two lists; set aside into ``stale/`` every file
        no row names, but the images of attempts still to make (``retries``) a killed process left."""
        self.read()
        in_source, in_filtered = self._unjournaled(retries)
        self._bring_back(in_filtered)
        pending = in_source | in_filtered
        order = {slot.key: i for i, slot in enumerate(self.slots)}
        self.source.mkdir(parents=True, exist_ok=True)
        write_rows(self.source / METADATA, sorted(self.kept.values(), key=lambda r: order[r.key]))
        self.discarded.sort(key=lambda r: (order[r.key], r.attempt))
        if self.discarded or self.discarded_list.exists():
            self.filtered_dir.mkdir(parents=True, exist_ok=True)
            write_rows(self.discarded_list, self.discarded)
        for journal in (self.source / JOURNALS).glob("*.jsonl"):  # folded into the lists above
            journal.unlink()
        moved = set_aside_unnamed(self.source, {row.file_name for row in self.kept.values()} | pending | {METADATA}, self.stale)
        named = {row.file_name for row in self.discarded if row.file_name} | {self.discarded_list.name}
        moved += set_aside_unnamed(self.filtered_dir, named, self.stale)
        remove_emptied([self.source / JOURNALS], self.source)
        if moved:
            logger.warning(
                "moved %d file(s) that no metadata row names (stale images, or files the run did not make) from %s and %s to %s; "
                "delete them there when you do not need them",
                moved, self.source, self.filtered_dir, self.stale,
            )  # fmt: skip

    def _unjournaled(self, retries: int) -> tuple[set[str], set[str]]:
        """Images of attempts still to make that are on disk already (a killed process renamed them
        into place but did not journal them): those under ``source/``, and those it had put under
        ``dropped/`` with no row saying so. Moves nothing."""
        in_source, in_filtered = set(), set()
        for work in self.work(retries):
            if work.slot.key in self.kept:  # a kept image to check again: it has its row
                continue
            name = self.file_name(work)
            if (self.source / name).is_file():
                in_source.add(name)
            elif (self.filtered_dir / name).is_file():
                in_filtered.add(name)
        return in_source, in_filtered

    def _bring_back(self, names: set[str]) -> None:
        """Move these unjournaled images from ``dropped/`` back to ``source/``: with no row saying
        why they were discarded, the filters judge them again, as any image on disk without a row."""
        for name in sorted(names):
            (self.source / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.filtered_dir / name, self.source / name)

    # --- what is left to do ------------------------------------------------------------------

    def work(self, retries: int) -> list[Work]:
        """Slots still to fill, in plan order: an image to check with the filters now on, or a next attempt."""
        tried: dict[tuple[str, int], list[SyntheticImage]] = {}
        for row in self.discarded:
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
                on_disk = (self.source / slot.file_name(self.maker, attempt)).is_file()  # made, then killed before its row
                out.append(Work(slot, attempt, blank, len(earlier) - blank, existing=on_disk))
        return out

    def image(self, work: Work) -> Image.Image:
        """The image on disk of an ``existing`` attempt."""
        with Image.open(self.source / self.file_name(work)) as image:
            return image.copy()

    # --- writing -------------------------------------------------------------------------------

    def record(self, verdicts: list[Verdict]) -> None:
        """Put a finished batch in place: kept images under ``source/``, filtered ones under
        ``dropped/`` (a blank one is not kept), then journal every row at once."""
        kept, discarded = [], []
        for v in verdicts:
            if v.reason is None:
                kept.append(self._keep(v.work, v.image))
            else:
                discarded.append(self._discard(v.work, v.image, v.reason))
        placed = {self.source / row.file_name for row in kept} | {self.filtered_dir / row.file_name for row in discarded if row.file_name}
        for folder in {path.parent for path in placed}:  # the renames on disk before the rows that name them
            sync_entries(folder)
        self._journal_rows(kept, discarded)

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

    def _discard(self, work: Work, image: Image.Image | None, reason: str) -> SyntheticImage:
        if image is None:
            return self._row(work, "", reason)
        name = self.file_name(work)
        path = self.filtered_dir / name
        if work.existing:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.source / name, path)
        else:
            write_png(image, path)
        return self._row(work, name, reason)

    def _journal_rows(self, kept: list[SyntheticImage], discarded: list[SyntheticImage]) -> None:
        """Append to this process's journal, flushed to disk before returning."""
        lines = [json.dumps({"kept": row.as_dict()}) for row in kept] + [json.dumps({"dropped": row.as_dict()}) for row in discarded]
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
    """Write ``image`` under ``path`` only once complete and on disk: a reader, even after a crash
    of the machine, never finds half an image (the caller flushes the folder: ``sync_entries``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}")
    with open(tmp, "wb") as f:
        image.save(f, format="PNG")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def set_aside_unnamed(root: Path, names: set[str], stale: Path) -> int:
    """Move the files under ``root`` whose relative path is not in ``names`` to ``stale/<root's name>/``,
    keeping their paths (never over a file there); return how many. Delete instead what the stage
    left half-written."""
    if not root.is_dir():
        return 0
    strays = [p for p in sorted(walk_files(root)) if str(p.relative_to(root)) not in names]
    moved = 0
    for path in strays:
        if HALF_WRITTEN.fullmatch(path.name):
            path.unlink()
        else:
            set_aside(path, stale / root.name / path.relative_to(root))
            moved += 1
    remove_emptied([path.parent for path in strays], root)
    return moved


def remove_emptied(folders: list[Path], root: Path) -> None:
    """Remove each of ``folders`` (under ``root``) left empty, and its parents left empty: a category
    folder no image is left in would read as a class of the source that is not a category."""
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
