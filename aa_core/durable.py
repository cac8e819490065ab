"""Flushing to disk what a rename is about to publish, so a crash of the machine leaves the old
state or the new one, never half of one. Two flushes, for two things a rename relies on:

* ``sync_files(folder)``: every file under ``folder`` (a training checkpoint written under a
  hidden name, before it is renamed whole);
* ``sync_entries(folder)``: ``folder``'s own entries, the renames into it (synthetic images
  renamed into place, before their journal rows say they are there).
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_files(folder: Path) -> None:
    """Flush every file under ``folder`` to disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def sync_entries(folder: Path) -> None:
    """Flush ``folder``'s entries (the renames into it) to disk; nothing where a folder cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot flush a folder
        pass
    finally:
        os.close(fd)
