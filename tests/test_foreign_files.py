"""Nothing lost, nothing let in: a folder aa did not make is refused, or adopted without losing a
file; what a run no longer wants is moved to ``stale/``, never deleted."""

import json

import yaml
from conftest import aa, read_json, stage_lines

from aa_core.run_folder import RunFolder

QUICK = ["--uda", "none", "--ssl", "none"]

# a user's folder: what a run would write over (config.yaml, source/, dropped/, prompts.jsonl), and the rest
FOREIGN = {
    "config.yaml": b"# my own settings\nseed: 3\n",
    "prompts.jsonl": b'{"text": "my prompt", "label": "0"}\n',
    "source/0/mine.png": b"\x89PNG not really an image",
    "source/metadata.jsonl": b'{"file_name": "0/mine.png"}\n',
    "dropped/dropped.jsonl": b"not json\n",
    "dropped/notes.txt": b"kept aside\n",
    "notes.txt": b"hello\n",
    "data/deep/a.bin": bytes(range(256)),
    ".hidden": b"secret\n",
}
SET_ASIDE = {"config.yaml", "prompts.jsonl", "source/0/mine.png", "source/metadata.jsonl", "dropped/dropped.jsonl", "dropped/notes.txt"}


def seed(root, files):
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def snapshot(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_aa_did_not_make_is_refused_before_anything_is_written(tmp_path, tiny_config, small_target):
    out = tmp_path / "mine"
    seed(out, FOREIGN)
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {out} is not an aa run folder and holds files aa did not write (config.yaml, .hidden, data, ...); "
        f"pass --out a new or empty folder, or add --adopt to `aa run` to run there (what it would overwrite moves to {out / 'stale'})"
    )
    assert snapshot(out) == FOREIGN  # not a byte changed, nothing added (not even the lock)
    stage = aa("adapt", out)  # a stage command reads the user's config.yaml, then is refused the same way
    assert stage.returncode == 1 and stage.stderr.startswith(f"error: {out} is not an aa run folder")
    assert snapshot(out) == FOREIGN


def test_an_adopted_folder_keeps_every_file_in_place_or_under_stale(tmp_path, tiny_config, small_target):
    out = tmp_path / "mine"
    seed(out, FOREIGN)
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK, "--adopt", check=0)
    assert f"WARNING: adopted {out}: 4 entries that the run writes moved to {out / 'stale'}, the rest left in place" in proc.stderr
    assert_every_foreign_file_kept(out)
    assert "environment" in yaml.safe_load((out / "config.yaml").read_text())  # the run's own record now
    assert read_json(out / "generation.json")["images"] == 60 and "target_accuracy" in read_json(out / "metrics.json")
    # now a run folder: the same command without --adopt reuses it, and the user's files stay
    again = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *QUICK, check=0)
    assert set(stage_lines(again.stderr).values()) == {"reused"}
    assert_every_foreign_file_kept(out)


def assert_every_foreign_file_kept(out):
    after = snapshot(out)
    for name, data in FOREIGN.items():
        where = f"stale/{name}" if name in SET_ASIDE else name
        assert after[where] == data, name  # byte-identical, where it was or under stale/


def test_adopting_never_overwrites_what_stale_already_holds(tmp_path):
    folder = RunFolder(tmp_path / "mine")
    seed(folder.root, {"config.yaml": b"first\n", "stale/config.yaml": b"older\n", "stale/config.1.yaml": b"oldest\n", "x": b"x"})
    folder.claim(adopt=True)
    assert snapshot(folder.root) == {
        "stale/config.yaml": b"older\n",
        "stale/config.1.yaml": b"oldest\n",
        "stale/config.2.yaml": b"first\n",
        "x": b"x",
    }


def test_folders_aa_made_or_that_hold_nothing_else_are_run_folders(tmp_path):
    assert RunFolder(tmp_path / "new").foreign() == []
    (tmp_path / "empty").mkdir()
    assert RunFolder(tmp_path / "empty").foreign() == []
    early = tmp_path / "early"  # a run killed before config.yaml; a sweep member before its run
    seed(early, {"aa.lock": b"", "unreadable.txt": b"0/bad.png\n", "sweep.log": b"$ aa run\n", ".config.yaml.123.tmp": b"seed: 0"})
    assert RunFolder(early).foreign() == []
    shared = tmp_path / "shared"  # an aa sweep member with stages shared in, and the user's notes beside
    seed(shared, {"stages.json": json.dumps({"prompts": {"fingerprint": "ab", "seconds": 0}}).encode(), "notes.txt": b"mine"})
    assert RunFolder(shared).foreign() == []
    theirs = tmp_path / "theirs"  # a stages.json aa did not write
    seed(theirs, {"stages.json": b"[1, 2]"})
    assert RunFolder(theirs).foreign() == ["stages.json"]
    images = tmp_path / "images"  # names a run writes, without the run's record: a user's
    seed(images, {"source/0/a.png": b"a", "prompts.jsonl": b"", "aa.lock": b""})
    assert RunFolder(images).foreign() == ["prompts.jsonl", "source"]


def test_a_stale_image_or_a_users_file_in_the_source_is_moved_to_stale_never_deleted(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--until", "generate", check=0)
    before = snapshot(out / "source")
    seed(out, {"source/0/mine.png": b"my image", "source/extra/a.txt": b"a", "dropped/b.txt": b"b", "stale/source/0/mine.png": b"older"})
    proc = aa("generate", out, "--set", "generator.images_per_class=4", check=0)  # slots 4 and 5 of each category go
    rows = [json.loads(line) for line in (out / "source" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 40
    gone = sorted(name for name in before if name != "metadata.jsonl" and name not in {r["file_name"] for r in rows})
    assert len(gone) == 20 and all(name.split("/")[1].startswith(("000004-", "000005-")) for name in gone)
    after = snapshot(out)
    for name in gone:
        assert after[f"stale/source/{name}"] == before[name]  # byte-identical, under stale/
    assert after["stale/source/0/mine.1.png"] == b"my image" and after["stale/source/0/mine.png"] == b"older"  # no overwrite
    assert after["stale/source/extra/a.txt"] == b"a" and after["stale/dropped/b.txt"] == b"b"
    assert not (out / "source" / "extra").exists()  # emptied, then removed: a class folder that is no category would fail adapt
    files = sorted(k.removeprefix("source/") for k in after if k.startswith("source/"))
    assert files == sorted([r["file_name"] for r in rows] + ["metadata.jsonl"])  # the source holds what its rows name
    warning = [line for line in proc.stderr.splitlines() if line.startswith("WARNING: moved")]
    assert warning == [
        f"WARNING: moved 23 file(s) that no metadata row names (stale images, or files the run did not make) from {out / 'source'} "
        f"and {out / 'dropped'} to {out / 'stale'}; delete them there when you do not need them"
    ]
