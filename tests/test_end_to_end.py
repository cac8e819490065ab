"""Short real runs of `aa`: the run folder, stage reuse, resuming, real sources, unlabelled targets."""

import csv
import json
import shutil
import signal
import subprocess
import sys

import pytest
import yaml
from conftest import aa, read_json, stage_lines


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, small_target):
    """One short run of every stage on the built-in task's machinery, with a small target folder."""
    root = tmp_path_factory.mktemp("run")
    tiny = root / "tiny.yaml"
    from conftest import TINY

    tiny.write_text(yaml.safe_dump(TINY))
    out = root / "run"
    proc = aa("run", "--config", tiny, "--target", small_target, "--out", out, check=0)
    return out, tiny, proc


def test_run_writes_every_artefact(tiny_run, small_target):
    out, _, proc = tiny_run
    assert stage_lines(proc.stderr) == {s: "done" for s in ("prompts", "generate", "adapt", "refine", "evaluate")}
    assert "target accuracy" in proc.stdout and "refine" in proc.stdout

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seed"] == 0 and config["data"]["target"] == str(small_target)
    assert config["plugins"]["uda"] == {"name": "dann", "distribution": "aa-uda", "version": "0.1.0"}
    assert set(config["plugins"]) == {"prompter", "generator", "uda", "ssl"}

    prompts = [line for line in (out / "prompts.jsonl").read_text().splitlines() if line]
    assert len(prompts) == 30  # 3 per class

    for name in ("source_only", "adapt", "refine"):
        assert (out / f"{name}.safetensors").stat().st_size > 0
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and set(rows[0]) == {"image", "predicted", "confidence"}
    assert all(r["predicted"] in [str(d) for d in range(10)] and 0 <= float(r["confidence"]) <= 1 for r in rows)

    metrics = read_json(out / "metrics.json")
    accuracy = metrics["target_accuracy"]
    assert set(accuracy) == {"source_only", "adapt", "refine"}
    assert all(0 <= v <= 1 for v in accuracy.values())
    assert set(metrics["seconds"]) == {"prompts", "generate", "adapt", "refine", "evaluate"}

    split = metrics["split"]
    assert split["strategy"] == "fraction" and sum(split["selected_per_class"].values()) == split["selected"]
    assert 0 <= split["agreement"] <= 1 and 0 <= split["selected_score"] <= 1
    assert 0 <= split["pseudo_label_accuracy"] <= 1 and split["reliable"] == (split["selected_score"] >= 0.88)
    with open(out / "split.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and sum(r["confident"] == "1" for r in rows) == split["selected"]
    if not split["reliable"]:
        assert "WARNING: the confident part looks unreliable" in proc.stderr


def test_refine_keep_chooses_the_final_model_without_retraining(tiny_run, tmp_path, small_target):
    from aa_core.runs import Run

    out, tiny_config, proc = tiny_run
    metrics = read_json(out / "metrics.json")
    final = metrics["final"]
    assert set(metrics["label_free"]) == {"source_only", "adapt", "refine"}
    ranked = ("source_only", "adapt", "refine")
    assert final["rule"] == "ensv" and final["model"] in ranked and final["runner_up"] in ranked
    assert final["runner_up"] != final["model"]
    assert f"final model: {final['model']} ({final['reason']}; runner-up {final['runner_up']})" in proc.stdout
    assert ("the final model is not the refined one: for a better one, try" in proc.stdout) == (final["model"] != "refine")
    assert Run.open(out).final_stage == final["model"]
    predictions = (out / "predictions.csv").read_text()
    for keep in ranked:
        forced = tmp_path / keep
        shutil.copytree(out, forced)
        proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", forced, "--set", f"refine.keep={keep}", check=0)
        assert stage_lines(proc.stderr) == {**{s: "reused" for s in ("prompts", "generate", "adapt", "refine")}, "evaluate": "done"}
        runner_up = "adapt" if keep == "refine" else "refine"  # the last stage trained that is not the one forced
        assert read_json(forced / "metrics.json")["final"] == {"model": keep, "runner_up": runner_up, "rule": "refine.keep",
                                                               "reason": f"refine.keep is {keep}"}  # fmt: skip
        assert "the final model is not the refined one" not in proc.stdout  # the user chose it
        assert Run.open(forced).final_stage == keep
        if keep == final["model"]:
            assert (forced / "predictions.csv").read_text() == predictions


def test_synthetic_source_loads_with_datasets_imagefolder(tiny_run):
    from datasets import load_dataset

    out, _, _ = tiny_run
    source = load_dataset("imagefolder", data_dir=str(out / "source"), split="train")
    assert len(source) == 60
    assert {"image", "label", "prompt", "seed", "generator"} <= set(source.column_names)
    row = source[0]
    assert row["generator"] == "glyph" and row["label"] in row["prompt"]
    assert len(set(source["seed"])) == 60


def test_rerun_reuses_everything_and_changing_ssl_reruns_only_refine(tiny_run, small_target):
    out, tiny, _ = tiny_run
    again = aa("run", "--config", tiny, "--target", small_target, "--out", out, check=0)
    assert set(stage_lines(again.stderr).values()) == {"reused"}
    changed = aa("run", "--config", tiny, "--target", small_target, "--out", out, "--set", "ssl.threshold=0.9", check=0)
    assert stage_lines(changed.stderr) == {
        "prompts": "reused",
        "generate": "reused",
        "adapt": "reused",
        "refine": "done",
        "evaluate": "done",
    }


def test_stage_subcommand_runs_one_stage_on_the_folder(tiny_run):
    out, _, _ = tiny_run
    proc = aa("evaluate", out, "--ssl", "none", check=0)
    assert stage_lines(proc.stderr) == {"evaluate": "done"}
    assert set(read_json(out / "metrics.json")["target_accuracy"]) == {"source_only", "adapt"}
    inactive = aa("refine", out)
    assert inactive.stderr.strip() == "error: stage refine does not run with --ssl none; change the config or pick another stage"
    before = (out / "config.yaml").read_text()
    missing = aa("refine", out, "--ssl", "fixmatch", "--set", "train.steps=11")
    assert (out / "config.yaml").read_text() == before  # a refused command changes nothing
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: stage adapt is missing or out of date in {out}; run `aa adapt {out}` first"


def test_interrupted_run_resumes_from_the_last_completed_stage(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "aa_cli.main", "run", "--config", tiny_config, "--target", small_target, "--out", out]
    args += ["--set", "train.steps=100000"]  # long enough to be interrupted in adapt
    # a shell's background job ignores SIGINT, and so would the child: give it the default back
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen([str(a) for a in args], stderr=subprocess.PIPE, text=True, preexec_fn=restore)
    for line in proc.stderr:
        if line.startswith("[adapt] running"):
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted: rerun the same command to resume" in rest and "Traceback" not in rest
    images = sorted((out / "source").rglob("*.png"))
    assert len(images) == 60

    resumed = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", "train.steps=5", check=0)
    lines = stage_lines(resumed.stderr)
    assert lines["prompts"] == lines["generate"] == "reused"
    assert lines["adapt"] == "done"
    assert sorted((out / "source").rglob("*.png")) == images


def test_generation_resumes_image_by_image(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    first = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--uda", "none", "--ssl", "none", check=0)
    assert "refine" not in stage_lines(first.stderr)
    metrics = read_json(out / "metrics.json")
    assert metrics["target_accuracy"]["source_only"] == metrics["target_accuracy"]["adapt"]
    kept, removed = sorted((out / "source" / "3").glob("00000[12]-*.png"))
    stamp = kept.stat().st_mtime_ns
    removed.unlink()
    proc = aa("generate", out, "--set", "generator.retries=4", check=0)  # reruns the stage; not in any image key
    assert stage_lines(proc.stderr) == {"generate": "done"}
    assert removed.exists()
    assert kept.stat().st_mtime_ns == stamp  # not rendered again


def test_real_labelled_source_skips_synthesis_and_training_is_blind_to_the_target_labels(tiny_run, tmp_path, tiny_config, small_target):
    """The same target images as a labelled folder, with its class folders renamed by a
    permutation, and flat: the same weights, bit for bit, and the same predictions."""
    synthetic, _, _ = tiny_run
    renamed, flat = tmp_path / "renamed", tmp_path / "flat"
    permutation = {str(d): str((3 * d + 1) % 10) for d in range(10)}
    for image in sorted(small_target.rglob("*.png")):
        (renamed / permutation[image.parent.name]).mkdir(parents=True, exist_ok=True)
        (renamed / permutation[image.parent.name] / image.name).write_bytes(image.read_bytes())
        flat.mkdir(exist_ok=True)
        (flat / image.name).write_bytes(image.read_bytes())
    outputs = {}
    for name, target in (("labelled", small_target), ("renamed", renamed), ("flat", flat)):
        out = tmp_path / f"run-{name}"
        proc = aa("run", "--config", tiny_config, "--source", synthetic / "source", "--target", target, "--out", out, check=0)
        assert list(stage_lines(proc.stderr)) == ["adapt", "refine", "evaluate"]
        assert not (out / "prompts.jsonl").exists()
        with open(out / "predictions.csv") as f:
            predictions = {row["image"].split("/")[-1]: row["predicted"] for row in csv.DictReader(f)}
        outputs[name] = [(out / f"{w}.safetensors").read_bytes() for w in ("adapt", "refine")], predictions
    assert outputs["labelled"] == outputs["renamed"] == outputs["flat"]
    metrics = read_json(tmp_path / "run-flat" / "metrics.json")
    assert "target_accuracy" not in metrics and metrics["labelled_target"] is False
    assert "the target has no labels" in proc.stdout


def test_third_party_uda_runs_and_every_lifecycle_hook_fires(tmp_path, tiny_config, small_target):
    log = tmp_path / "hooks.jsonl"
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--uda", "entropy", "--ssl", "none",
       fakes=["good", "example:aa-entropy"], env={"AA_FAKE_HOOK_LOG": str(log)}, check=0)
    events = [yaml.safe_load(line) for line in log.read_text().splitlines()]
    assert events[0] == {"event": "run_start", "run_dir": str(out), "uda": "entropy"}
    assert [e["stage"] for e in events if e["event"] == "stage_start"] == ["prompts", "generate", "adapt", "evaluate"]
    assert [e["stage"] for e in events if e["event"] == "stage_end"] == ["prompts", "generate", "adapt", "evaluate"]
    assert events[-1]["event"] == "run_end" and "target_accuracy" in events[-1]["metrics"]
    logs = [e for e in events if e["event"] == "log"]
    assert [(e["stage"], e["step"]) for e in logs] == [("source_only", 0), ("source_only", 9), ("adapt", 0), ("adapt", 9)]
    assert logs[-1]["names"] == ["entropy", "loss"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["plugins"]["uda"] == {"name": "entropy", "distribution": "aa-entropy", "version": "0.1.0"}
    # the example plugin's own hooks ran too: its timings file and its command
    timings = aa("timings", out, fakes=["example:aa-entropy"], check=0).stdout.split()
    assert timings[::3] == ["prompts", "generate", "adapt", "evaluate"]


def test_bad_target_is_one_line(tmp_path, tiny_config):
    proc = aa("run", "--config", tiny_config, "--target", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: image folder {tmp_path / 'nowhere'} does not exist")
    wrong = tmp_path / "wrong"
    (wrong / "cat").mkdir(parents=True)
    proc = aa("run", "--config", tiny_config, "--target", wrong, "--out", tmp_path / "run2")
    assert "has class folder 'cat' that is not a category" in proc.stderr


def test_mixmatch_refines_after_source_only_with_a_top_k_split(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--uda", "none", "--ssl", "mixmatch",
       "--set", "refine.strategy=topk", "--set", "refine.top_k=2", check=0)  # fmt: skip
    metrics = read_json(out / "metrics.json")
    assert set(metrics["target_accuracy"]) == {"source_only", "adapt", "refine"}
    assert all(n <= 2 for n in metrics["split"]["selected_per_class"].values())
    assert yaml.safe_load((out / "config.yaml").read_text())["plugins"]["ssl"]["name"] == "mixmatch"


@pytest.mark.parametrize(("uda", "backbone"), [("mcd", "aa_small_cnn"), ("symnets", "aa_small_cnn"), ("cdtrans", "aa_vit_tiny")])
def test_fixmatch_follows_an_algorithm_that_changes_the_network(tmp_path, tiny_config, small_target, uda, backbone):
    """MCD predicts with two classifiers, SymNets with the target half of a 2K-wide one, CDTrans
    with a transformer it trains three ways; a config without a backbone gets the algorithm's."""
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--uda", uda, check=0)
    config = yaml.safe_load((out / "config.yaml").read_text())
    from aa_core.plugins import plugin_manager

    defaults = plugin_manager().load("uda", uda).Options().model_dump(mode="json")
    assert config["uda"] == {"name": uda, **defaults}  # its own options, each at its default, written out
    assert config["model"]["backbone"] == backbone
    assert set(read_json(out / "metrics.json")["target_accuracy"]) == {"source_only", "adapt", "refine"}


def test_prompts_edited_by_hand_are_kept_and_rendered(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--until", "prompts", check=0)
    assert not (out / "source").exists() and "0:" in proc.stdout  # stopped, and showed a sample
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    rows[0]["text"] = "a very shaky handwritten digit 0 drawn with a thick marker"
    edited = "".join(json.dumps(r) + "\n" for r in rows)
    (out / "prompts.jsonl").write_text(edited)
    shown = aa("prompts", out, "--show", check=0)
    assert "a very shaky handwritten digit 0 drawn with a thick marker" in shown.stdout
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--until", "generate", check=0)
    assert (out / "prompts.jsonl").read_text() == edited  # the prompts stage was reused: the edit stays
    metadata = [json.loads(line) for line in (out / "source" / "metadata.jsonl").read_text().splitlines()]
    assert any(m["prompt"] == rows[0]["text"] for m in metadata)
    rows[0]["text"] = "a tiny handwritten digit 0"  # a second edit renders again
    (out / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--until", "generate", check=0)
    assert "[prompts] reused" in proc.stderr and "[generate] done" in proc.stderr
    metadata = [json.loads(line) for line in (out / "source" / "metadata.jsonl").read_text().splitlines()]
    assert any(m["prompt"] == "a tiny handwritten digit 0" for m in metadata)


def test_a_pretrained_backbone_at_another_size_than_its_documented_one_is_warned_about(tmp_path, tiny_config, small_target):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("test_resnet", num_classes=0).state_dict(), tmp_path / "w.safetensors")
    sets = ("--set", "model.backbone=test_resnet", "--set", f"model.pretrained={tmp_path / 'w.safetensors'}")
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", tmp_path / "run", *sets, "--until", "prompts", check=0)
    assert "model.backbone test_resnet was pretrained on 160x160 images and data.image_size is 8" in proc.stderr
