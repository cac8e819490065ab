"""A file downloaded whole and checked, or not at all.

GLIDE's own ``fetch_file_cached`` writes whatever the server answers straight under the cache's
final name: the body of a 404 or 500, or the first half of an interrupted transfer, is then kept
as ``base.pt`` and read again by every later run. Here the body streams into a temporary file in
the same folder while it is hashed (SHA-256), and only a complete one is renamed to the final
name (``os.replace``, atomic within a folder): an HTTP success, as many bytes as the server
announced, and the pinned size and sum where they are pinned. Anything else removes the temporary
file and ends in one line; the cache then holds what it held before.

Two processes that download the same file at once (a sweep on several devices) each write their
own temporary file; both are checked, and the last rename wins with the same bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from aa_core.api import AAError

CHUNK = 1 << 20  # bytes read, hashed and written at a time


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_intact(path: Path, sha256: str | None, size: int | None) -> bool:
    """Whether a file already in the cache is the one pinned (its sum, else its size, where pinned)."""
    if not path.is_file():
        return False
    if sha256 is not None:
        return sha256_of(path) == sha256
    return size is None or path.stat().st_size == size


def fetch_verified(url: str, dest: Path, sha256: str | None = None, size: int | None = None, *, fix: str, timeout: float = 60,
                   progress: bool = False) -> str:  # fmt: skip
    """Download ``url`` to ``dest`` and return its SHA-256; nothing is left at ``dest`` or beside
    it unless the whole body arrived and matches the pinned ``sha256`` and ``size`` (None: not pinned).

    ``fix`` ends every error line: what the user can do instead.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    part = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            got, received = stream(url, out, timeout, progress, fix)
        if size is not None and received != size:
            raise AAError(f"{dest.name} from {url} is {received} bytes, not the pinned {size}; nothing was cached: {fix}")
        if sha256 is not None and got != sha256:
            raise AAError(f"{dest.name} from {url} has SHA-256 {got}, not the pinned {sha256}; nothing was cached: {fix}")
        os.replace(part, dest)
        return got
    finally:
        part.unlink(missing_ok=True)  # after os.replace there is nothing left to remove


def stream(url: str, out, timeout: float, progress: bool, fix: str) -> tuple[str, int]:
    """Copy the body of a successful response to ``out``: (its SHA-256, its length in bytes)."""
    digest, received = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # raises HTTPError on any 4xx or 5xx
            expected = int(response.headers.get("Content-Length") or 0) or None
            bar = progress_bar(expected, url) if progress else None
            for block in iter(lambda: response.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
                received += len(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
    except urllib.error.HTTPError as exc:
        raise AAError(f"cannot download {url} (HTTP {exc.code} {exc.reason}); nothing was cached: {fix}") from None
    except http.client.HTTPException as exc:  # IncompleteRead: the server closed before the length it announced
        raise AAError(f"cannot download {url} ({type(exc).__name__}: the transfer was cut short); nothing was cached: {fix}") from None
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a malformed address
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise AAError(f"cannot download {url} ({type(exc).__name__}: {reason}); nothing was cached: {fix}") from None
    if expected is not None and received != expected:
        raise AAError(f"the download of {url} ended after {received} of {expected} bytes; nothing was cached: {fix}")
    return digest.hexdigest(), received


def progress_bar(total: int | None, url: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="iB", unit_scale=True, desc=url.rsplit("/", 1)[-1])
