"""What a user's folders or an edited run folder may hold (issue 36): names that start a spreadsheet
formula, and links planted where the run writes."""

from __future__ import annotations

import shutil

import pytest
from conftest import TINY, aa, read_json

from aa_core.runs import read_csv

FORMULAS = ["=HYPERLINK(x)", "+1", "@SUM(A1)", "-2+3", "'quoted"]


@pytest.fixture(scope="module")
def formula_run(tmp_path_factory, small_target):
    """A run on a copy of the small target whose file names and first category start formulas,
    with that folder as a real source too (no glyphs to render for such a category)."""
    import yaml

    root = tmp_path_factory.mktemp("formulas")
    target = root / "target"
    shutil.copytree(small_target, target)
    (target / "0").rename(target / "=zero")
    for name, path in zip(FORMULAS, sorted((target / "1").iterdir())):
        path.rename(path.with_name(name + ".png"))
    categories = ["=zero", *map(str, range(1, 10))]
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "task": {"categories": categories}}))
    out = root / "run"
    aa("run", "--config", config, "--source", target, "--target", target, "--out", out, check=0)
    return out, target, config


def test_csv_cells_that_would_start_a_formula_are_quoted_and_read_back_as_they_were(formula_run):
    import csv

    out, target, _config = formula_run
    names = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.png"))
    for name in ("predictions.csv", "split.csv"):
        with open(out / name, newline="") as f:
            raw = [cell for row in csv.reader(f) for cell in row]
        assert not [cell for cell in raw if cell.startswith(("=", "+", "-", "@"))], name
        assert "'=zero/" in (out / name).read_text()
        rows = read_csv(out / name)
        assert sorted(row["image"] for row in rows) == names  # every name back as it was, "1/'quoted.png" too
    predicted = [row["predicted"] for row in read_csv(out / "predictions.csv")]
    assert set(predicted) <= {"=zero", *map(str, range(1, 10))}
    assert read_json(out / "metrics.json")["split"]["selected"] > 0  # split.csv read back: its labels are categories


def test_planted_links_are_replaced_never_written_through(formula_run, tmp_path):
    out, target, config = formula_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (run / "aa.lock").unlink()
    (run / "aa.lock").symlink_to(precious)
    args = ("--config", config, "--source", target, "--target", target, "--out", run)
    locked = aa("run", *args, "--ssl", "mixmatch", check=1)
    assert locked.stderr.strip().splitlines()[-1] == (
        f"error: {run / 'aa.lock'} is a link, where aa keeps its own lock file; delete the link (aa follows none there)"
    )
    (run / "aa.lock").unlink()
    for name in ("predictions.csv", "split.csv"):
        (run / name).unlink()
        (run / name).symlink_to(precious)
    aa("run", *args, "--ssl", "mixmatch", check=0)
    (run / "report.html").symlink_to(precious)
    aa("report", run, check=0)
    (tmp_path / "table").mkdir()
    (tmp_path / "table" / "compare.csv").symlink_to(precious)
    aa("compare", run, "--out", tmp_path / "table", check=0)
    assert precious.read_text() == "keep me"
    for path in (run / "predictions.csv", run / "split.csv", run / "report.html", tmp_path / "table" / "compare.csv"):
        assert path.is_file() and not path.is_symlink(), path
    assert not list(run.glob(".*.tmp"))
