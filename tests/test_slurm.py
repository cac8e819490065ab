"""`aa sweep --launcher slurm`: the sweep's phases as jobs with dependencies, submitted through
submitit to a real one-node SLURM cluster (.ci/run starts one with .ci/slurm-cluster); where
none runs, the same jobs through submitit's local executor (``--launcher slurm-local``).

One small sweep covers it: 2 generators x 2 SSL algorithms, where one generator fails (a font
folder that does not exist): its generation job fails and the jobs after it never run, while the
other generator's runs share one generation and one adaptation. The source-only job is stopped
while it trains (``scancel``; the whole command for the local executor), and ``aa sweep ROOT``
shows the states and submits again what did not finish.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import TINY, aa, read_json

GOOD = ["generator.model=system__ssl.name=none/seed0", "generator.model=system__ssl.name=fixmatch/seed0"]
BAD = ["generator.model=nosuch-fonts__ssl.name=none/seed0", "generator.model=nosuch-fonts__ssl.name=fixmatch/seed0"]
GRID = {
    "generator.model": ["system", "nosuch-fonts"],
    "ssl.name": ["none", "fixmatch"],
    "slurm": {"gpus_per_run": 0, "cpus_per_run": 1, "time": "0:20:00"},  # two one-CPU slots on the test cluster
}
NO_FONTS = "error: glyph found no .ttf or .otf fonts in nosuch-fonts; set generator.model to a font file or folder"
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def slurm_missing() -> str | None:
    """Why no SLURM cluster takes jobs here; None when one does."""
    if shutil.which("sbatch") is None:
        return "SLURM is not installed (.ci/run installs it: .ci/slurm-cluster install, then start)"
    ping = subprocess.run(["timeout", "10", "scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        return "no SLURM controller answers here (.ci/slurm-cluster start starts one)"
    up = ["timeout", "10", "sinfo", "--noheader", "--states=idle,mixed,allocated", "--format=%N"]
    nodes = subprocess.run(up, capture_output=True, text=True)
    return None if nodes.stdout.strip() else "the SLURM cluster here has no node up (see /var/log/aa-slurm/slurmd.log)"


MISSING = slurm_missing()


def squeue() -> dict[str, dict]:
    """Every job the controller knows: id -> state, reason, start and end (seconds since the epoch)."""
    out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T|%r|%S|%e"], capture_output=True, text=True, timeout=60)
    jobs = {}
    for line in out.stdout.splitlines():
        job_id, state, reason, start, end = line.split("|")
        stamp = lambda t: time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")) if t[:1].isdigit() else None  # noqa: E731
        jobs[job_id] = {"state": state, "reason": reason, "start": stamp(start), "end": stamp(end)}
    return jobs


def job_ids(root) -> dict[str, str]:
    return {name: record["id"] for name, record in read_json(root / "sweep.json")["jobs"].items() if record["id"]}


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"still waiting, after {timeout} s, for {what}")


def all_ended(root) -> bool:
    states = squeue()
    return all(states.get(i, {}).get("state") in ENDED for i in job_ids(root).values())


@pytest.fixture
def sweep_files(tmp_path, small_target):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(GRID))
    base = ["--config", tmp_path / "tiny.yaml", "--set", "uda.name=none", "--set", f"data.target={small_target}"]
    # the source-only job trains ~10 s, checkpointing every 500 steps: stopped after its first
    # checkpoint, it is stopped mid-training, never after its work is done (10 steps took 0.3 s)
    base += ["--set", "source_only.steps=3000", "--set", "train.checkpoint_every=500"]
    return tmp_path / "sweep", ["--grid-file", tmp_path / "grid.yaml", *base]


def training(root, member) -> bool:
    """The member's source-only training has saved a checkpoint: it is mid-training."""
    return any((root / member).glob("checkpoints/*/step-*/checkpoint.json"))


def assert_shared_and_compared(root):
    """The good generator's two runs: one generation and one adaptation (hard links), each finished; the comparison."""
    good = [root / m for m in GOOD]
    sample = sorted((good[0] / "source").rglob("*.png"))[:3]
    assert sample and all(os.path.samefile(p, good[1] / p.relative_to(good[0])) for p in sample)
    assert os.path.samefile(good[0] / "adapt.safetensors", good[1] / "adapt.safetensors")
    state = read_json(good[1] / "stages.json")  # the second run took what the first made, after it was made
    assert {state[s]["shared_from"] for s in ("generate", "source_only", "adapt")} == {str(good[0])}  # prompts: from any run
    logs = "".join((run / "sweep.log").read_text() for run in good)
    assert logs.count("[generate] done") == 1 and logs.count("[refine] done") == 1
    aa("compare", root, check=0)
    rows = list(csv.DictReader(open(root / "compare.csv")))
    assert sorted(r["configuration"] for r in rows) == ["ssl.name=fixmatch", "ssl.name=none"]  # the failed runs have no row
    for row, member in zip(sorted(rows, key=lambda r: r["configuration"]), sorted(GOOD)[::-1]):
        metrics = read_json(root / member / "metrics.json")
        assert row["final"] == f"{metrics['target_accuracy'][metrics['final']['model']]:.4f} ± 0.0000"


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_a_sweep_on_slurm_runs_its_phases_in_dependency_order_and_resumes_a_cancelled_job(sweep_files):
    root, args = sweep_files
    try:
        proc = aa("sweep", root, *args, "--launcher", "slurm", check=0)
        assert "0 of 4 runs done" in proc.stdout and "4 waiting for their jobs" in proc.stdout
        ids = job_ids(root)
        source_only = f"source_only {GOOD[0]}"
        assert sorted(ids) == sorted([f"generate {GOOD[0]}", f"generate {BAD[0]}", source_only, f"source_only {BAD[0]}",
                                      *(f"run {m}" for m in GOOD + BAD)])  # fmt: skip
        wait_until(lambda: training(root, GOOD[0]), 300, "the source-only job to train")
        subprocess.run(["scancel", ids[source_only]], check=True)
        wait_until(lambda: all_ended(root), 120, "every job to end")
        states = squeue()
        first = {name: states[i]["state"] for name, i in ids.items()}
        assert first == {f"generate {GOOD[0]}": "COMPLETED", f"generate {BAD[0]}": "FAILED", source_only: "CANCELLED",
                         f"source_only {BAD[0]}": "CANCELLED", **{f"run {m}": "CANCELLED" for m in GOOD + BAD}}  # fmt: skip
        assert states[ids[source_only]]["start"] >= states[ids[f"generate {GOOD[0]}"]]["end"]
        assert {states[ids[f"run {m}"]]["reason"] for m in GOOD + BAD} == {"DependencyNeverSatisfied"}

        resumed = aa("sweep", root)  # shows the states, records the failure, submits again what did not finish
        assert resumed.returncode == 1
        assert f"job {ids[f'generate {BAD[0]}']} generate {BAD[0]}: FAILED ({NO_FONTS})" in resumed.stderr
        assert f"job {ids[source_only]} {source_only}: CANCELLED" in resumed.stderr
        status = read_json(root / "sweep.json")["status"]
        bad_generation = f"failed: generate {BAD[0]}: {NO_FONTS}"
        assert status == dict.fromkeys(GOOD, f"failed: {source_only}: CANCELLED") | dict.fromkeys(BAD, bad_generation)
        again = job_ids(root)
        assert again[f"generate {GOOD[0]}"] == ids[f"generate {GOOD[0]}"]  # its work is done: not submitted again
        assert all(again[name] != ids[name] for name in ids if name != f"generate {GOOD[0]}")
        wait_until(lambda: all_ended(root), 420, "the resubmitted jobs to end")
        states = squeue()
        good = [f"generate {GOOD[0]}", source_only, *(f"run {m}" for m in GOOD)]
        assert {name: states[again[name]]["state"] for name in good} == dict.fromkeys(good, "COMPLETED")
        assert states[again[f"generate {BAD[0]}"]]["state"] == "FAILED"  # failed again, alone
        for member in GOOD:  # each run started after the adaptation it reuses was made
            assert states[again[f"run {member}"]]["start"] >= states[again[source_only]]["end"]
        assert_shared_and_compared(root)
        log = (root / GOOD[0] / "sweep.log").read_text()  # the job's log is in the run's folder
        assert f"[job {again[source_only]}] completed" in log and f"[job {again[f'run {GOOD[0]}']}] completed" in log
        assert "resuming from the checkpoint at step" in log  # the stopped training went on from its checkpoint
    finally:  # nothing of this test stays queued
        if (root / "sweep.json").is_file():
            subprocess.run(["scancel", *job_ids(root).values()], capture_output=True)


@pytest.mark.skipif(MISSING is None, reason="SLURM runs here: the test on SLURM covers these jobs")
def test_without_slurm_the_local_executor_runs_the_same_jobs_in_order_and_resumes_a_stopped_sweep(sweep_files):
    root, args = sweep_files
    env = {k: v for k, v in os.environ.items() if not k.startswith("AA_")} | {"PYTHONPATH": ""}
    cmd = [sys.executable, "-m", "aa_cli.main", "sweep", str(root), *map(str, args), "--launcher", "slurm-local"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        wait_until(lambda: training(root, GOOD[0]), 300, "the source-only job to train")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the command and every job it started
        proc.wait()
    ids = job_ids(root)
    resumed = aa("sweep", root)  # waits for the jobs this time
    assert resumed.returncode == 1
    assert f"job {ids[f'generate {BAD[0]}']} generate {BAD[0]}: FAILED ({NO_FONTS})" in resumed.stderr
    assert f"job {ids[f'source_only {GOOD[0]}']} source_only {GOOD[0]}: ENDED" in resumed.stderr
    assert f"job - source_only {BAD[0]}: not started, a job it depends on failed" in resumed.stderr
    status = read_json(root / "sweep.json")["status"]
    assert status == dict.fromkeys(GOOD, "done") | dict.fromkeys(BAD, f"failed: generate {BAD[0]}: {NO_FONTS}")
    assert "2 of 4 runs done" in resumed.stdout
    assert "resuming from the checkpoint at step" in (root / GOOD[0] / "sweep.log").read_text()
    assert_shared_and_compared(root)


def test_the_plan_is_one_job_per_distinct_generation_source_only_model_and_adaptation_then_one_per_run(tmp_path, small_target):
    from aa_results.sweep import Sweep
    from aa_results.sweep_jobs import plan

    grid = {"uda.name": ["none", "dann"], "ssl.name": ["none", "fixmatch"]}
    sweep = Sweep(tmp_path, sets=["prompts.per_class=3"], grid=grid, seeds=[0, 1])
    jobs, failed = plan(sweep, sweep.members())
    graph = {job.name: (job.until, job.after) for job in jobs}
    expected = {}
    for s in (0, 1):  # the seed is in every stage's fingerprint: each seed its own generation
        first, dann = f"uda.name=none__ssl.name=none/seed{s}", f"uda.name=dann__ssl.name=none/seed{s}"
        expected |= {
            f"generate {first}": ("generate", []),
            f"source_only {first}": ("adapt", [f"generate {first}"]),  # it adapts too: uda none is its adaptation
            f"adapt {dann}": ("adapt", [f"source_only {first}"]),
            f"run {first}": (None, [f"source_only {first}"]),
            f"run uda.name=none__ssl.name=fixmatch/seed{s}": (None, [f"source_only {first}"]),
            f"run {dann}": (None, [f"adapt {dann}"]),
            f"run uda.name=dann__ssl.name=fixmatch/seed{s}": (None, [f"adapt {dann}"]),
        }
    assert graph == expected and failed == {}
    assert [job.name.split()[0] for job in jobs] == ["generate"] * 2 + ["source_only"] * 2 + ["adapt"] * 2 + ["run"] * 8

    real = Sweep(tmp_path, sets=[f"data.source={small_target}"], grid={"uda.name": ["none", "nosuch"], "ssl.name": ["none", "fixmatch"]})
    jobs, failed = plan(real, real.members())  # a real source: nothing to generate; a bad name fails alone, unplanned
    assert [(job.name, job.after) for job in jobs] == [
        ("source_only uda.name=none__ssl.name=none/seed0", []),
        ("run uda.name=none__ssl.name=none/seed0", ["source_only uda.name=none__ssl.name=none/seed0"]),
        ("run uda.name=none__ssl.name=fixmatch/seed0", ["source_only uda.name=none__ssl.name=none/seed0"]),
    ]
    assert sorted(failed) == ["uda.name=nosuch__ssl.name=fixmatch/seed0", "uda.name=nosuch__ssl.name=none/seed0"]
    assert failed["uda.name=nosuch__ssl.name=none/seed0"].startswith("error: unknown uda 'nosuch'. Choose one of: ")
    hub = Sweep(tmp_path, grid={"generator.model": ["stabilityai/sdxl-turbo"]}).members()[0]
    assert hub.folder == "generator.model=stabilityai%2Fsdxl-turbo/seed0"  # one level under the root, as every run's


BAD_TIME = "SLURM option time 'soon' is not a time limit sbatch reads; write minutes, H:M:S or D-H:M:S"


def test_slurm_options_read_as_sbatch_writes_them_and_refuse_what_it_would_not(tmp_path):
    from aa_core.errors import AAError
    from aa_results.cluster_options import SlurmOptions, parse_options, slurm_section

    (tmp_path / "grid.yaml").write_text("uda.name: [dann]\nslurm:\n  time: 12:00:00\n  sbatch: ['--qos=high', '#SBATCH --exclusive']\n")
    options = SlurmOptions.from_dict(slurm_section(tmp_path / "grid.yaml") | parse_options(["partition=gpu", "gpus_per_run=4"]))
    assert (options.minutes(), options.partition, options.gpus_per_run) == (720, "gpu", 4)  # YAML's base 60 would make it 43200
    assert options.additional() == {"qos": "high", "exclusive": True}
    limits = {"90": 90, "30:30": 31, "1:00:00": 60, "2-0": 2880, "1-12:30": 2190, "1-0:0:30": 1441}  # sbatch's forms, in minutes
    assert {text: SlurmOptions(time=text).minutes() for text in limits} == limits
    for values, message in [
        ({"time": "soon"}, BAD_TIME),
        ({"gpus": 2}, "unknown SLURM option gpus; choose from partition, gpus_per_run, cpus_per_run, time, account, sbatch"),
        ({"sbatch": ["qos=high"]}, "SLURM option sbatch: 'qos=high' is not an sbatch flag; write it as --name=value or --name"),
        ({"gpus_per_run": -1}, "SLURM option gpus_per_run must be a whole number of at least 0, not -1"),
    ]:
        with pytest.raises(AAError) as caught:
            SlurmOptions.from_dict(values)
        assert str(caught.value).startswith(message)
    proc = aa("sweep", tmp_path / "sweep", "--grid", "uda.name=none", "--launcher", "slurm", "--slurm", "time=soon")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: " + BAD_TIME
    proc = aa("sweep", tmp_path / "sweep", "--launcher", "slurm", "--devices", "0,1")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: --devices spreads runs over this machine's GPUs; on SLURM ask each job for GPUs with --slurm gpus_per_run=N"
    )
