"""Progress bars: live on a terminal, a line every 30 s in a log file."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(iterable=None, **kwargs):
    interactive = sys.stderr.isatty()
    return tqdm(iterable, leave=False, mininterval=0.1 if interactive else 30.0, **kwargs)
