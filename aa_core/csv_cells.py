"""The CSV files aa writes (``predictions.csv``, ``split.csv``, ``compare.csv``, ``aa predict --out``):
safe to open in a spreadsheet, and written whole.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
as a formula (``=HYPERLINK(...)`` in a file name or a category is enough). Such a cell is written
with a leading ``'``, which spreadsheets show as text; so is one that starts with ``'`` itself, so
that reading back (``read_csv``) removes exactly one: every text comes back as it was.

A file is written to a temporary name and renamed into place (``run_folder.write_atomic``): a
link planted under its name is replaced, never followed, and a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from aa_core.run_folder import write_atomic

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads a cell starting so as a formula


def cell(value) -> str:
    """``value`` as a cell: with a leading ``'`` where it would start a formula (or starts with ``'``)."""
    text = str(value)
    return "'" + text if text.startswith((*FORMULA_STARTS, "'")) else text


def plain(text: str) -> str:
    """A cell's text as it was before ``cell``."""
    return text[1:] if text.startswith("'") else text


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """``header`` and ``rows`` as CSV at ``path``, every cell through ``cell``, written whole."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([cell(value) for value in row] for row in rows)
    write_atomic(path, out.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file ``write_csv`` wrote, every cell as it was given."""
    with open(path, newline="") as f:
        return [{plain(k): plain(v or "") for k, v in row.items()} for row in csv.DictReader(f)]
