"""Using results: sweeps that share stages and resume, comparison tables, the HTML report in a real
browser, predictions on new images, and an export that loads without Adapt Anything."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

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


def test_a_sweep_generates_once_adapts_once_per_algorithm_and_compares_four_rows(tmp_path, tiny_config):
    root = tmp_path / "sweep"
    proc = aa("sweep", root, *GRID, "--config", tiny_config, check=0)
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


def test_an_interrupted_sweep_resumes_and_still_shares(tmp_path, tiny_config):
    root = tmp_path / "sweep"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AA_")} | {"PYTHONPATH": ""}
    cmd = [sys.executable, "-m", "aa_cli.main", "sweep", str(root), *GRID, "--config", str(tiny_config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any("[adapt] running" in p.read_text() for p in root.glob("*/seed*/sweep.log")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the run it was in
    proc.wait()
    assert not all((run / "metrics.json").is_file() for run in members(root))

    resumed = aa("sweep", root, check=0)
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
    metrics = {"target_accuracy": {"source_only": 0.5, "adapt": accuracy}, "seconds": {"adapt": seconds}}
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
    assert rows["uda.name=mcd"]["refine"] == "" and "uda.name=mcd" in proc.stdout
    missing = aa("compare", tmp_path / "nowhere")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: {tmp_path / 'nowhere'} does not exist; name run folders or folders holding them"


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


def test_an_export_predicts_the_target_as_the_run_did_in_a_process_without_adapt_anything(finished_run, small_target, tmp_path):
    out = tmp_path / "export"
    aa("export", finished_run, out, check=0)
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "modeling.py", "backbones.py", "head.pt", "README.md"}
    card = (out / "README.md").read_text()
    metrics = read_json(finished_run / "metrics.json")
    assert "`mcd`" in card and "`glyph`" in card and f"refine {metrics['target_accuracy']['refine']:.4f}" in card
    hide = tmp_path / "hide" / "aa_core"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('Adapt Anything is not installed here')\n")
    rows = list(csv.DictReader(open(finished_run / "predictions.csv")))
    script = f"""
import json, sys
sys.path.insert(0, {str(out)!r})
import modeling
rows = json.loads(sys.argv[1])
predicted = modeling.predict({str(out)!r}, [{str(small_target)!r} + "/" + r["image"] for r in rows])
print(json.dumps([p[0] for p in predicted]))
assert not [m for m in sys.modules if m.startswith(("aa_core", "aa_uda", "aa_ssl"))]
"""
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(hide.parent)}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(rows)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    predicted = json.loads(proc.stdout)
    assert predicted == [r["predicted"] for r in rows]
    labels = [r["image"].split("/")[0] for r in rows]
    accuracy = round(sum(p == y for p, y in zip(predicted, labels)) / len(rows), 4)
    assert accuracy == metrics["target_accuracy"]["refine"]


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
