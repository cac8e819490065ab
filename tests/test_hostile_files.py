"""What a user's folders or an edited run folder may hold (issue 36): names that start a spreadsheet
formula, and links planted where the run writes."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def test_the_report_escapes_every_value_it_shows_and_skips_what_an_edit_broke(formula_run, tmp_path):
    import json

    import yaml

    out, _target, _config = formula_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["target_accuracy"]["adapt"] = "<script>alert(1)</script>"
    metrics["seconds"] = {"<b>adapt</b>": "soon"}
    metrics["final"]["reason"] = "<i>edited</i>"
    (run / "metrics.json").write_text(json.dumps(metrics))
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    recorded["plugins"]["<img src=x onerror=alert(2)>"] = {"name": "dann", "distribution": "aa-uda", "version": "1"}
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    with open(run / "train_log.jsonl", "a") as f:
        f.write('{"stage": "adapt", "step": \n')  # a torn line
    rows = (run / "predictions.csv").read_text().splitlines()
    (run / "predictions.csv").write_text("\n".join([rows[0], rows[1].rsplit(",", 1)[0] + ",not-a-number", *rows[2:]]) + "\n")
    aa("report", run, check=0)
    page = (run / "report.html").read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x onerror" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<b>adapt</b>" not in page and "&lt;b&gt;adapt&lt;/b&gt; soon s" in page
    assert "<i>edited" not in page and f"<p>final model: {metrics['final']['model']} (&lt;i&gt;edited&lt;/i&gt;; runner-up " in page


def test_an_edited_metrics_or_config_file_is_one_line_in_every_tool(formula_run, tmp_path):
    out, target, _config = formula_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    (run / "metrics.json").write_text('{"target_accuracy": ')
    for args in (("report", run), ("compare", run, "--out", tmp_path)):
        proc = aa(*args, check=1)
        assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {run / 'metrics.json'} is not JSON ("), args
    shutil.copy(out / "metrics.json", run / "metrics.json")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text('seed: !!python/object/apply:os.system ["echo owned > ' + str(tmp_path / "owned") + '"]\n' + text)
    for args in (("report", run), ("adapt", run), ("predict", run, target), ("export", run, tmp_path / "exported"),
                 ("compare", run, "--out", tmp_path)):  # fmt: skip
        proc = aa(*args, check=1)
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {run / 'config.yaml'} is not a config aa can read (ConstructorError at line 1: "), (args, last)
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "owned").exists()


def png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header is rewritten to claim ``width`` x ``height`` (CRC fixed)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # type + 13 bytes of IHDR
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_images_that_would_fail_or_flood_later_are_left_out_at_the_scan(tmp_path, small_target):
    """A truncated JPEG (PIL's verify passes it), a PNG claiming 13000x13000 pixels, a 3 GB .png:
    listed in unreadable.txt before any work, never read whole; the run completes on the rest."""
    import io

    import numpy as np
    from PIL import Image

    from aa_core.data.image_folder import content_key

    target = tmp_path / "target"
    shutil.copytree(small_target, target)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    whole = buffer.getvalue()
    (target / "3" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    with Image.open(target / "3" / "truncated.jpg") as image:
        image.verify()  # what the scan relied on: it passes
    (target / "4" / "huge.png").write_bytes(png_claiming(13000, 13000))
    with open(target / "5" / "enormous.png", "wb") as f:
        f.truncate(3 << 30)  # sparse: nothing on disk, 3 GB to a reader
    (target / "6" / "fine.jpg").write_bytes(whole)
    assert content_key(target / "6" / "fine.jpg") is not None
    assert [content_key(target / n) for n in ("3/truncated.jpg", "4/huge.png", "5/enormous.png")] == [None, None, None]

    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config_in(tmp_path), "--target", target, "--out", out, "--ssl", "none", check=0)
    assert (out / "unreadable.txt").read_text().splitlines() == ["3/truncated.jpg", "4/huge.png", "5/enormous.png"]
    assert "skipped 3 unreadable target image(s)" in proc.stderr
    assert read_json(out / "metrics.json")["target_images"] == 61


def tiny_config_in(folder):
    import yaml

    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_names_that_are_not_utf8_or_hold_a_newline_are_shown_safely_and_the_run_completes(tmp_path, small_target):
    """Old archives' names (bytes that are not UTF-8), and a newline in a name: the run trains on
    the readable one, lists the unreadable ones one per line, and every file it writes is UTF-8."""
    import os

    target = tmp_path / "target"
    shutil.copytree(small_target, target)
    good = sorted((target / "0").iterdir())[0]
    latin = target / "0" / os.fsdecode(b"\xff\xfebad.png")
    latin.write_bytes(good.read_bytes()[:-1] + b"\x00")  # another file, readable
    (target / "1" / os.fsdecode(b"\xff\xfebroken.png")).write_bytes(b"garbage")
    (target / "2" / "new\nline.png").write_bytes(b"garbage")
    (target / "3" / "\x1b[31mred.png").write_bytes(b"garbage")
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config_in(tmp_path), "--target", target, "--out", out, check=0)
    assert (out / "unreadable.txt").read_text(encoding="utf-8").splitlines() == [
        "1/\\xff\\xfebroken.png", "2/new\\nline.png", "3/\\x1b[31mred.png",
    ]  # fmt: skip
    assert "\x1b[31m" not in proc.stderr
    names = [row["image"] for row in read_csv(out / "predictions.csv")]
    assert "0/\\xff\\xfebad.png" in names and len(names) == 61
    for name in ("predictions.csv", "split.csv", "metrics.json", "unreadable.txt"):
        (out / name).read_bytes().decode("utf-8")
    assert not [p for p in out.rglob(".*.tmp")]
    aa("report", out, check=0)


def test_a_prompt_too_long_is_refused_naming_its_category_and_escapes_are_shown_not_run(tmp_path):
    """Any prompter's prompt over 1000 characters (here a CSV's, tests/fake_dists/csvprompts) and a
    hand edit of prompts.jsonl: one line naming the category; an escape sequence edited into a
    prompt reaches the terminal as its escape."""
    import json

    config = tiny_config_in(tmp_path)
    table = tmp_path / "prompts.csv"
    table.write_text("3," + "a handwritten three " * 60 + "\n")
    out = tmp_path / "run"
    proc = aa("run", "--config", config, "--out", out, "--prompter", "csv", "--set", f"prompts.file={table}", "--until", "prompts",
              fakes=["csvprompts"], check=1)  # fmt: skip
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: prompter 'csv': a prompt of category '3' is 1200 characters long, more than 1000; shorten it, or fix what wrote it"
    )
    assert not (out / "prompts.jsonl").exists()

    aa("run", "--config", config, "--out", out, "--until", "prompts", check=0)
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    rows[0]["text"] = "a \x1b[2J\x1b[31mred digit"
    (out / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shown = aa("prompts", out, "--show", check=0)
    assert "\x1b" not in shown.stdout and "a \\x1b[2J\\x1b[31mred digit" in shown.stdout
    rows[1]["text"] = "x" * 5000
    (out / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited = aa("run", "--config", config, "--out", out, "--until", "generate", check=2)
    assert f"{out / 'prompts.jsonl'} line 2: a prompt of category" in edited.stderr and "5000 characters long" in edited.stderr


def test_links_out_of_the_target_are_not_followed_and_any_depth_is_walked(tmp_path, small_target, request):
    """A class folder linked elsewhere: one line; an image linked from outside, a link to `/`, a
    loop of links: left out or not walked; a tree 1,100 folders deep: walked, no RecursionError."""
    target = tmp_path / "target"
    shutil.copytree(small_target, target)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(small_target / "3", elsewhere)
    (target / "3" / "outside.png").symlink_to(elsewhere / sorted(p.name for p in elsewhere.iterdir())[0])
    (target / "4" / "root").symlink_to("/")
    (target / "5" / "loop").symlink_to(target / "5")
    (target / "6" / "inside.png").symlink_to(sorted((target / "7").iterdir())[0])  # a link within the target: kept
    deep = target / "8"
    for _ in range(1100):  # deeper than Python's recursion limit; made one folder at a time
        deep = deep / "d"
        deep.mkdir()
    request.addfinalizer(lambda: remove_deep(target / "8" / "d"))  # shutil.rmtree (pytest's cleanup) would recurse
    shutil.copy(sorted((target / "8").glob("*.png"))[0], deep / "deep.png")
    out = tmp_path / "run"
    config = tiny_config_in(tmp_path)
    aa("run", "--config", config, "--target", target, "--out", out, "--ssl", "none", "--uda", "none", check=0)
    assert (out / "unreadable.txt").read_text().splitlines() == ["3/outside.png"]
    assert read_json(out / "metrics.json")["target_images"] == 62  # 60, the link inside, the deep one

    (target / "9").rename(tmp_path / "nine")
    (target / "9").symlink_to(tmp_path / "nine")
    linked = aa("run", "--config", config, "--target", target, "--out", tmp_path / "r2", check=1)
    assert linked.stderr.strip().splitlines()[-1] == (
        f"error: {target / '9'} is a link to {tmp_path / 'nine'}, outside {target}; "
        "copy or move the images into the folder (aa follows no link out of it)"
    )


def remove_deep(top: Path) -> None:
    """Delete a tree of any depth without recursion: files on the way down, folders bottom-up."""
    import os

    pending, folders = [top], []
    while pending:
        folder = pending.pop()
        folders.append(folder)
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            else:
                os.unlink(entry.path)
    for folder in reversed(folders):
        folder.rmdir()


def test_an_image_planted_in_a_finished_synthetic_source_is_not_trained_on(tmp_path, small_target):
    """[generate] is reused, and [adapt] trains on the images metadata.jsonl names alone: the
    planted one is named in a warning, the weights are those of the source without it."""
    out, config = tmp_path / "run", tiny_config_in(tmp_path)
    args = ("--config", config, "--target", small_target, "--out", out, "--ssl", "none")
    aa("run", *args, "--until", "generate", check=0)
    clean = tmp_path / "clean"
    shutil.copytree(out, clean)
    planted = out / "source" / "3" / "planted.png"
    shutil.copy(sorted((small_target / "7").iterdir())[0], planted)
    proc = aa("run", *args, check=0)
    assert "[generate] reused" in proc.stderr
    assert f"1 file(s) in {out / 'source'} that no metadata row names are not trained on (3/planted.png)" in proc.stderr
    aa("run", "--config", config, "--target", small_target, "--out", clean, "--ssl", "none", check=0)
    assert (out / "adapt.safetensors").read_bytes() == (clean / "adapt.safetensors").read_bytes()
    assert planted.is_file()  # not a file aa wrote: left where it is until a generation sets it aside


class OpensAFile:
    """Unpickled, it would call open(path, "w"): proof that unpickling ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_what_a_tool_or_a_resume_reads_is_one_line_never_a_traceback(tmp_path, small_target):
    """aa predict on a PNG claiming 13000x13000 pixels; a resumed stage whose checkpoint holds a
    pickled object (never run); model.pretrained naming a checkpoint of another architecture."""
    import torch
    import yaml

    out, config = tmp_path / "run", tiny_config_in(tmp_path)
    base = ("--config", config, "--target", small_target, "--out", out)
    aa("run", *base, "--ssl", "none", "--uda", "none", check=0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(13000, 13000))
    proc = aa("predict", out, bomb, "--out", tmp_path / "p.csv", check=1)
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bomb} does not open as an image aa can use (")
    assert "Traceback" not in proc.stderr

    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "train": {"batch_size": 8, "steps": 10, "refine_steps": 4,
                                                                                    "checkpoint_every": 2}}))  # fmt: skip
    run2 = tmp_path / "run2"
    env = {"AA_FAKE_FAIL_AT": "3"}
    aa("run", "--config", slow, "--target", small_target, "--out", run2, "--ssl", "boom", fakes=["badalgos"], env=env, check=1)
    (step,) = (run2 / "checkpoints" / "refine").glob("step-*")
    marker = tmp_path / "ran"
    torch.save({"algorithm": OpensAFile(marker)}, step / "training.pt")
    resumed = aa("run", "--config", slow, "--target", small_target, "--out", run2, "--ssl", "boom", fakes=["badalgos"], check=1)
    last = resumed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {step / 'training.pt'} is not a checkpoint of tensors aa wrote (UnpicklingError: "), last
    assert last.endswith(f"delete {run2 / 'checkpoints' / 'refine'} and the stage starts afresh") and not marker.exists()

    other = tmp_path / "resnet.pth"
    import timm

    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), other)
    wrong = aa("run", *base[:-1], tmp_path / "run3", "--set", "model.backbone=resnet10t", "--set", f"model.pretrained={other}", check=1)
    last = wrong.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: model.pretrained {other} is not a checkpoint of backbone 'resnet10t' ("), last


def test_an_export_killed_half_way_leaves_nothing_in_the_way_of_the_next(formula_run, tmp_path):
    """The export is written beside its folder and renamed whole: what a killed one left (its
    temporary folder) is removed by the next, which writes the folder in full."""
    out, _target, _config = formula_run
    left = tmp_path / ".exported.4242.export-tmp"
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"half")
    aa("export", out, tmp_path / "exported", check=0)
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["README.md", "config.json", "model.safetensors", "modeling.py"]
    assert not left.exists() and not list(tmp_path.glob(".*export-tmp"))
