"""The generation stage: rows written as images are made, dropped images set aside and made again,
the same source whatever the number of processes, and nothing lost to a kill but the batch in flight."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import aa, read_json, stage_lines
from PIL import Image

UNTIL = ["--until", "generate"]
COIN = ["--set", "filters.coin.share=0.5"]  # tests/fake_dists/good: drops half the images by a hash of their pixels


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def check_source(out, asked):
    """Every row's image present and decodable, no (prompt, seed) twice, nothing unlisted; counts per class."""
    kept = rows(out / "source" / "metadata.jsonl")
    pairs = [(r["prompt"], r["seed"]) for r in kept]
    assert len(pairs) == len(set(pairs))
    for row in kept:
        with Image.open(out / "source" / row["file_name"]) as image:
            image.load()
    files = sorted(str(p.relative_to(out / "source")) for p in (out / "source").rglob("*") if p.is_file())
    assert files == sorted([r["file_name"] for r in kept] + ["metadata.jsonl"])
    counts = {}
    for row in kept:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    assert all(n <= asked for n in counts.values())
    return kept


def test_a_dropped_image_is_set_aside_listed_and_its_slot_made_again(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, *COIN, fakes=["good"], check=0)
    kept = check_source(out, asked=6)
    dropped = rows(out / "dropped" / "dropped.jsonl")
    assert dropped and all(r["reason"].startswith("coin: coin ") for r in dropped)
    for row in dropped:  # kept aside, not deleted
        assert (out / "dropped" / row["file_name"]).is_file()
    by_slot = {}
    for row in dropped:
        by_slot.setdefault((row["label"], row["slot"]), []).append(row["attempt"])
    for row in kept:  # a kept image is the attempt after its slot's dropped ones, each with a new seed
        earlier = by_slot.get((row["label"], row["slot"]), [])
        assert sorted(earlier) == list(range(row["attempt"])) and row["filtered"] == len(earlier)
    retried = [r for r in kept if r["attempt"] > 0]
    assert retried and len({r["seed"] for r in retried}) == len(retried)
    given_up = [slot for slot, attempts in by_slot.items() if len(attempts) == 4]  # 1 + generator.retries
    assert len(kept) + len(given_up) == 60
    summary = read_json(out / "generation.json")
    assert summary["images"] == len(kept) and summary["dropped"] == len(dropped) and summary["blank"] == 0
    counts = ", ".join(f"{d}: {summary['per_class'][str(d)]}" for d in range(10))
    assert f"generated {len(kept)} images: {counts}; 0 blank and {len(dropped)} dropped attempts made again" in proc.stderr
    if given_up:
        assert "got fewer than 6 images after 3 retries" in proc.stderr


def test_turning_the_filter_off_keeps_every_image_already_made(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, *COIN, fakes=["good"], check=0)
    before = {r["file_name"]: (out / "source" / r["file_name"]).stat().st_mtime_ns for r in rows(out / "source" / "metadata.jsonl")}
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, "--set", "filters.coin=null",
              fakes=["good"], check=0)  # fmt: skip
    assert stage_lines(proc.stderr)["generate"] == "done"
    kept = check_source(out, asked=6)
    assert len(kept) == 60 and not (out / "dropped" / "dropped.jsonl").read_text()
    for name, stamp in before.items():
        assert (out / "source" / name).stat().st_mtime_ns == stamp


def test_a_stricter_filter_checks_the_images_on_disk_before_making_new_ones(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, fakes=["good"], check=0)
    first = {r["file_name"] for r in rows(out / "source" / "metadata.jsonl")}
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, *COIN, fakes=["good"], check=0)
    dropped = rows(out / "dropped" / "dropped.jsonl")
    first_attempts = [r for r in dropped if r["attempt"] == 0]
    assert first_attempts and {r["file_name"] for r in first_attempts} <= first  # the old images, moved aside
    kept = check_source(out, asked=6)
    assert {r["file_name"] for r in kept if r["attempt"] == 0} <= first


def test_an_unknown_filter_or_option_is_one_line_before_any_work(tmp_path, tiny_config):
    proc = aa("run", "--config", tiny_config, "--out", tmp_path / "run", "--set", "filters.nope={}", fakes=["good"])
    assert proc.returncode == 1 and proc.stderr.strip() == "error: unknown filter 'nope'. Choose one of: clip, coin"
    proc = aa("run", "--config", tiny_config, "--out", tmp_path / "run", "--set", "filters.coin.share=2", fakes=["good"])
    assert proc.returncode == 2  # a config error
    assert proc.stderr.strip().startswith("error: invalid config: filters.coin.share: Input should be less than or equal to 1")
    assert not (tmp_path / "run" / "prompts.jsonl").exists()


def launch(*args, processes=2):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "aa_cli.main", *map(str, args)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("AA_")}
    env |= {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("AA_TEST_PYTHONPATH", "")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_make_the_same_source_as_one(tmp_path, tiny_config, small_target, monkeypatch):
    from conftest import FAKE_DISTS

    monkeypatch.setenv("AA_TEST_PYTHONPATH", str(FAKE_DISTS / "good"))
    args = ["run", "--config", tiny_config, "--target", small_target, *UNTIL, *COIN, "--set", "generator.batch_size=4"]
    launch(*args, "--out", tmp_path / "two")
    aa(*args, "--out", tmp_path / "one", fakes=["good"], check=0)
    for name in ("source/metadata.jsonl", "dropped/dropped.jsonl"):
        assert rows(tmp_path / "two" / name) == rows(tmp_path / "one" / name)
    for row in rows(tmp_path / "one" / "source" / "metadata.jsonl"):
        one, two = (Image.open(tmp_path / run / "source" / row["file_name"]) for run in ("one", "two"))
        assert one.tobytes() == two.tobytes()
    assert not [p.name for p in (tmp_path / "two").rglob(".*")]  # no journal or half-written image left


def test_a_kill_mid_generation_loses_at_most_the_batch_in_flight(tmp_path, tiny_config, small_target, stable_diffusion):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "aa_cli.main", "run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL,
            "--generator", "stable-diffusion", "--set", f"generator.model={stable_diffusion}", "--set", "generator.steps=3",
            "--set", "generator.batch_size=2"]  # fmt: skip
    proc = subprocess.Popen([str(a) for a in args], stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": ""})
    journal = out / "source" / ".journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sum(len(p.read_text().splitlines()) for p in journal.glob("*.jsonl")) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    made = {str(p.relative_to(out / "source")): p.stat().st_mtime_ns for p in (out / "source").rglob("[!.]*.png")}
    assert 10 <= len(made) < 60  # killed mid-way

    resumed = aa(*args[3:], check=0)
    assert stage_lines(resumed.stderr)["generate"] == "done"
    kept = check_source(out, asked=6)
    assert len(kept) == 60  # exactly the count asked for
    still = {name: (out / "source" / name).stat().st_mtime_ns for name in made if (out / "source" / name).exists()}
    assert len(made) - len(still) <= 2 and all(still[n] == made[n] for n in still)  # at most one batch redone
    assert not [p.name for p in out.rglob(".*")]
    assert not (out / "stale").exists()  # an image in place without its row is checked and kept, not set aside


def test_a_source_made_before_attempts_existed_keeps_its_images(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, check=0)
    metadata = out / "source" / "metadata.jsonl"
    old = [{k: r[k] for k in ("file_name", "label", "prompt", "seed", "generator")} for r in rows(metadata)]  # version 0.1's rows
    metadata.write_text("".join(json.dumps(r) + "\n" for r in old))
    state = read_json(out / "stages.json")
    del state["generate"]  # as after an upgrade, whose generation fingerprint differs
    (out / "stages.json").write_text(json.dumps(state))
    stamps = {r["file_name"]: (out / "source" / r["file_name"]).stat().st_mtime_ns for r in old}
    aa("generate", out, check=0)
    kept = check_source(out, asked=6)
    assert len(kept) == 60 and all(r["attempt"] == 0 for r in kept)
    assert {r["file_name"]: (out / "source" / r["file_name"]).stat().st_mtime_ns for r in kept} == stamps


def test_an_image_made_but_not_journaled_is_kept_and_half_written_files_are_removed(tmp_path, tiny_config, small_target):
    """What a kill leaves: an image in place whose row never reached the journal, a torn journal line,
    a half-written image and row list. The first is checked and kept as it is; the rest were the stage's own."""
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *UNTIL, check=0)
    metadata = out / "source" / "metadata.jsonl"
    kept = rows(metadata)
    unjournaled = kept.pop()  # its image stays on disk, its row is gone
    stamp = (out / "source" / unjournaled["file_name"]).stat().st_mtime_ns
    metadata.write_text("".join(json.dumps(r) + "\n" for r in kept))
    (out / "source" / ".journal").mkdir()
    (out / "source" / ".journal" / "host-1.jsonl").write_text('{"kept": {"file_name": "9/0000')
    (out / "source" / "3" / ".000004-0123456789ab.png").write_bytes(b"\x89PNG half")
    (out / "source" / ".metadata.jsonl.4242.tmp").write_text('{"file_name"')
    state = read_json(out / "stages.json")
    del state["generate"]  # as a killed generation leaves it
    (out / "stages.json").write_text(json.dumps(state))
    proc = aa("generate", out, check=0)
    assert rows(metadata)[-1] == unjournaled and (out / "source" / unjournaled["file_name"]).stat().st_mtime_ns == stamp
    check_source(out, asked=6)
    assert not (out / "stale").exists() and "WARNING: moved" not in proc.stderr
    assert not [p.name for p in out.rglob(".*")]


def test_an_image_is_flushed_to_disk_before_its_name_and_its_row_are(tmp_path, monkeypatch):
    """write_png: temporary file written and fsynced, then renamed; record: the folder fsynced, then the journal."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name a file descriptor")
    from aa_core.data.synthetic import Slot
    from aa_core.data.synthetic_source import SyntheticSource, Verdict, Work

    events = []
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", str(path.relative_to(tmp_path)), os.fstat(fd).st_size if path.is_file() else None))
        fsync(fd)

    def logged_replace(src, dst):
        events.append(("replace", str(Path(src).relative_to(tmp_path)), str(Path(dst).relative_to(tmp_path))))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    slot = Slot("0", 0, "a digit 0", 7)
    source = SyntheticSource(tmp_path / "source", tmp_path / "dropped", [slot], {"name": "glyph"}, "", tmp_path / "stale")
    source.record([Verdict(Work(slot), Image.new("L", (8, 8), 200), None)])
    name = source.file_name(Work(slot))
    size = (tmp_path / "source" / name).stat().st_size
    journal = next((tmp_path / "source" / ".journal").glob("*.jsonl"))
    assert events == [
        ("fsync", f"source/0/.{name.split('/')[1]}", size),  # the whole image, on disk under its temporary name
        ("replace", f"source/0/.{name.split('/')[1]}", f"source/{name}"),
        ("fsync", "source/0", None),  # the rename on disk
        ("fsync", str(journal.relative_to(tmp_path)), journal.stat().st_size),  # then the row naming it
    ]


def test_a_prompt_label_that_is_not_a_category_is_one_line_before_any_image(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    args = ["run", "--config", tiny_config, "--target", small_target, "--out", out]
    aa(*args, "--until", "prompts", check=0)
    lines = (out / "prompts.jsonl").read_text().splitlines()
    row = json.loads(lines[4])
    for edit, problem in [
        (json.dumps({**row, "label": "../../x"}), "line 5: label '../../x' is not a category (0, 1, 2, ..., 9); "
                                                  "change it to one of task.categories or delete the line"),
        ('{"text": "a digit", "label": ', 'line 5 is not a prompt; write it as {"text": "...", "label": "<category>"} or delete it'),
        (json.dumps({"text": "a digit"}), 'line 5 is not a prompt; write it as {"text": "...", "label": "<category>"} or delete it'),
    ]:  # fmt: skip
        (out / "prompts.jsonl").write_text("\n".join([*lines[:4], edit, *lines[5:]]) + "\n")
        proc = aa(*args, *UNTIL)
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if not line.startswith("[")]
        assert errors == [f"error: {out / 'prompts.jsonl'} {problem}"]
        assert not (out / "source").exists() and not (tmp_path / "x").exists()  # no image, least of all outside the run


def test_asking_what_is_left_moves_nothing_and_settling_brings_a_rowless_filtered_image_back(tmp_path):
    """A process killed between moving a filtered image to dropped/ and journaling it: the image
    has no row saying why. The queries (read, work, _unjournaled) leave every file where it is;
    settle brings the image back to source/, where the filters judge it again, and sets aside
    only what no row or pending attempt names."""
    from aa_core.data.synthetic import Slot
    from aa_core.data.synthetic_source import SyntheticSource

    slots = [Slot("cat", 0, "a photo of a cat", 7), Slot("cat", 1, "a photo of a cat", 8)]
    maker = {"name": "tiny"}
    src, filtered, stale = tmp_path / "source", tmp_path / "dropped", tmp_path / "stale"
    rowless = slots[0].file_name(maker, 0)
    stray = "cat/not-ours.png"
    for folder, name in ((filtered, rowless), (filtered, stray)):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(folder / name)
    source = SyntheticSource(src, filtered, slots, maker, "", stale)
    source.read()
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert [w.existing for w in source.work(retries=2)] == [False, False]
    assert source._unjournaled(retries=2) == (set(), {rowless})
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == before
    source.settle(retries=2)
    assert (src / rowless).is_file() and not (filtered / rowless).exists()
    assert (stale / "dropped" / stray).is_file()
    assert [w.existing for w in source.work(retries=2)] == [True, False]  # judged again, not made again
