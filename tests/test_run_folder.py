"""The run folder stays truthful: images match their metadata, several processes share one folder,
and bad input ends in one line."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import aa, read_json, stage_lines
from PIL import Image

QUICK = ["--uda", "none", "--ssl", "none"]


def rows(out):
    return [json.loads(line) for line in (out / "source" / "metadata.jsonl").read_text().splitlines()]


def render(row, size=32):
    """Render a metadata row again with the generator it names."""
    from aa_core.api import GeneratorContext
    from aa_core.plugins import plugin_manager

    cls = plugin_manager().load("generator", row["generator"])
    generator = cls(cls.Options(size=size), GeneratorContext(None, [str(d) for d in range(10)], "cpu"))
    return np.asarray(generator.generate([row["prompt"]], [row["seed"]])[0])


def assert_images_are_what_their_rows_say(out, size=32):
    listed = rows(out)
    files = sorted(str(p.relative_to(out / "source")) for p in (out / "source").rglob("*.png"))
    assert files == sorted(r["file_name"] for r in listed)  # nothing stale is left beside them
    for row in listed[::7]:
        assert np.array_equal(np.asarray(Image.open(out / "source" / row["file_name"])), render(row, size))


def test_a_new_seed_or_generator_option_never_keeps_a_stale_image(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK, check=0)
    first = {r["file_name"]: r for r in rows(out)}
    assert_images_are_what_their_rows_say(out)

    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK, "--seed", "7", check=0)
    second = {r["file_name"]: r for r in rows(out)}
    assert not set(first) & set(second)  # every image was made anew
    assert_images_are_what_their_rows_say(out)
    set_aside = sorted(str(p.relative_to(out / "stale" / "source")) for p in (out / "stale" / "source").rglob("*.png"))
    assert set_aside == sorted(first)  # seed 0's images moved out of the source, not deleted

    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK, "--seed", "7",
              "--set", "generator.size=16", check=0)  # fmt: skip
    assert stage_lines(proc.stderr)["generate"] == "done"
    assert not set(second) & {r["file_name"] for r in rows(out)}
    assert_images_are_what_their_rows_say(out, size=16)


def test_more_images_per_class_keeps_the_ones_already_made(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK, check=0)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "source").rglob("*.png")}
    aa("generate", out, "--set", "generator.images_per_class=8", check=0)
    assert len(rows(out)) == 80
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # the first 6 per class were kept
    assert_images_are_what_their_rows_say(out)


def test_two_processes_share_one_run_folder(tmp_path, tiny_config, small_target):
    """`accelerate launch` with 2 CPU processes (gloo): one writer, the same folder as one process makes."""
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "aa_cli.main"]  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AA_")}, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    args = ["run", "--config", tiny_config, "--target", small_target, "--out", out]
    proc = subprocess.run([*launch, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # hooks run on the main process only: one line per stage
    assert [line for line in proc.stderr.splitlines() if line.startswith("[")].count("[adapt] running") == 1
    assert not [p.name for p in out.rglob(".*")]  # no temporary file left behind
    state = read_json(out / "stages.json")
    assert set(state) == {"prompts", "generate", "source_only", "adapt", "refine", "evaluate"}
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 0
    assert len((out / "prompts.jsonl").read_text().splitlines()) == 30
    assert len(rows(out)) == 60 and len(list((out / "source").rglob("*.png"))) == 60
    assert set(read_json(out / "metrics.json")["target_accuracy"]) == {"source_only", "adapt", "refine"}
    # one process, same folder: everything is reused
    again = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, check=0)
    assert set(stage_lines(again.stderr).values()) == {"reused"}


@pytest.fixture
def target_copy(tmp_path, small_target):
    copy = tmp_path / "target"
    shutil.copytree(small_target, copy)
    return copy


def test_unreadable_target_images_are_skipped_counted_and_listed(tmp_path, tiny_config, target_copy):
    (target_copy / "0" / "bad.png").write_text("garbage\n")
    (target_copy / "3" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", target_copy, "--out", out, *QUICK, check=0)
    warnings = [line for line in proc.stderr.splitlines() if "unreadable" in line]
    assert warnings == [
        f"WARNING: skipped 2 unreadable target image(s) in {target_copy}: 0/bad.png, 3/empty.jpg (listed in {out / 'unreadable.txt'})"
    ]
    assert (out / "unreadable.txt").read_text().split() == ["0/bad.png", "3/empty.jpg"]
    metrics = read_json(out / "metrics.json")
    assert metrics["target_images"] == 60 and metrics["unreadable_target_images"] == 2
    assert "Traceback" not in proc.stderr


def test_a_target_with_nothing_readable_is_one_line(tmp_path, tiny_config):
    target = tmp_path / "target"
    target.mkdir()
    (target / "a.png").write_text("garbage\n")
    proc = aa("run", "--config", tiny_config, "--target", target, "--out", tmp_path / "run")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: image folder {target} holds 1 file(s), none of which opens as an image; add readable images"
    )


@pytest.mark.parametrize("out", ["/proc/x", "/proc/version/x"])
def test_an_out_folder_that_cannot_be_made_is_one_line(out):
    proc = aa("run", "--out", out)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot create run folder {out}: ")
    assert lines[0].endswith("; pass --out a folder you can write")
