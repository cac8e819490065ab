"""One writer per run folder: the lock ``aa.lock`` a run or stage command holds while it works.

The lock is an advisory POSIX lock (``lockf``) on ``<run>/aa.lock``, taken without waiting: a second command
on the same folder ends at once with one line naming the holder (its pid, host, command and
start time, written into the file). The kernel drops the lock when its process ends, however it
ends, so a lock left by a killed run is recovered by the next command without anyone's help.
The file itself stays: removing it would let a late opener lock a file no one else sees. A POSIX
lock, unlike ``flock``, is not inherited by forked children: data-loader workers that outlive a
stage (or a run stopped in this process) never hold the folder.
Under ``accelerate launch`` the main process holds it for all of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aa_core.errors import AAError

NAME = "aa.lock"


@contextmanager
def writer_lock(root: Path, take: bool = True) -> Iterator[None]:
    """Hold ``root``'s lock for the duration (nothing when not ``take``: another process holds it for this run)."""
    if not take:
        yield
        return
    path = Path(root) / NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)  # never through a planted link
    except OSError as exc:
        if os.path.islink(path):
            raise AAError(f"{path} is a link, where aa keeps its own lock file; delete the link (aa follows none there)") from None
        raise AAError(f"cannot open the lock file {path}: {exc.strerror}; pass a folder you can write") from None
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AAError(f"run folder {root} is in use by {holder(path)}; wait for it to end, or stop it") from None
        command = "aa " + sys.argv[1] if len(sys.argv) > 1 else "aa"
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def holder(path: Path) -> str:
    """Who holds the lock, in words, from what it wrote."""
    try:
        record = json.loads(path.read_text())
        return f"another aa process (pid {record['pid']} on {record['host']}: `{record['command']}` since {record['since']})"
    except (OSError, ValueError, KeyError):
        return "another aa process"
