"""Fault injection: kill `aa run` and `aa sweep` with SIGKILL at seeded random moments, resume, compare.

Each trial starts a fresh run folder, kills the command at a random moment inside a random stage
(prompts, generation, adaptation or refinement: a random delay after the stage's ``running`` line,
up to that stage's length in an uninterrupted run), reruns the same command to the end, and checks
that

* the final metrics and the weights are those of an uninterrupted run, bit for bit;
* the folder holds exactly the files an uninterrupted run leaves: no partial file, no temporary,
  no journal, no checkpoint;
* every image decodes.

Then `aa export` killed at random moments of its own (``--exports``): the folder then holds
exactly the exported files, after the next export into it (or at once, where the kill came after
its rename), and no temporary folder is left beside it.

Then a full disk: the run folder on a small tmpfs (root; else a per-file size limit, RLIMIT_FSIZE)
must end in a one-line error with nothing lost, and the same command must finish once space is back.

    python benchmarks/faults.py                 # 20 kills (about 10 minutes on 2 cores)
    python benchmarks/faults.py --kills 3 --no-disk
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

STAGES = ("prompts", "generate", "adapt", "refine")
CONFIG = {
    "prompts": {"per_class": 2},
    "generator": {"images_per_class": 12},
    "source_only": {"steps": 60},
    "train": {"batch_size": 16, "steps": 60, "refine_steps": 40, "checkpoint_every": 10},
}
SWEEP_GRID = ["--grid", "ssl.name=fixmatch,mixmatch"]


def command(kind: str, out: Path, config: Path) -> list[str]:
    if kind == "sweep":
        return [sys.executable, "-m", "aa_cli.main", "sweep", str(out), "--config", str(config), *SWEEP_GRID]
    return [sys.executable, "-m", "aa_cli.main", "run", "--config", str(config), "--out", str(out)]


def environment() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AA_")}
    env["AA_CACHE"] = os.environ.get("AA_CACHE", str(Path(tempfile.gettempdir()) / "aa-cache"))
    return env


def run_to_end(kind: str, out: Path, config: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limited():
        if limit_bytes is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(command(kind, out, config), capture_output=True, text=True, env=environment(), preexec_fn=limited)


def run_and_kill(kind: str, out: Path, config: Path, stage: str, delay: float) -> tuple[bool, str]:
    """Start the command; SIGKILL it ``delay`` s after ``[stage] running``. (killed, the stage it was in)."""
    proc = subprocess.Popen(command(kind, out, config), stderr=subprocess.PIPE, text=True, env=environment(), start_new_session=True)
    state = {"stage": "start", "timer": None}

    def kill():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and every process it started (a sweep's members)

    if stage == "any":  # a sweep prints no stage lines: a moment anywhere in it
        state["stage"], state["timer"] = "sweep", threading.Timer(delay, kill)
        state["timer"].start()

    for line in proc.stderr:
        if line.startswith("[") and "] running" in line:
            state["stage"] = line[1 : line.index("]")]
            if state["stage"] == stage and state["timer"] is None:
                state["timer"] = threading.Timer(delay, kill)
                state["timer"].start()
    proc.wait()
    if state["timer"] is not None:
        state["timer"].cancel()
    return proc.returncode == -signal.SIGKILL, state["stage"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def summary(root: Path) -> dict:
    """What must match an uninterrupted run: metrics (less seconds), weights, the set of files."""
    out = {"files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "sweep.json")}
    for metrics in sorted(root.rglob("metrics.json")):
        values = json.loads(metrics.read_text())
        values.pop("seconds", None)
        out[str(metrics.relative_to(root))] = values
    for weights in sorted(root.rglob("*.safetensors")):
        out[str(weights.relative_to(root))] = digest(weights)
    return out


def undecodable(root: Path) -> int:
    bad = 0
    for path in root.rglob("*.png"):
        try:
            with Image.open(path) as image:
                image.load()
        except Exception:
            bad += 1
    return bad


def stage_seconds(root: Path) -> dict[str, float]:
    metrics = next(root.rglob("metrics.json"))
    return json.loads(metrics.read_text())["seconds"]


def disk_full(work: Path, config: Path, reference: dict, tmpfs: bool = True) -> tuple[bool, bool, str]:
    """Fill the disk mid-run: (one line, resumed identical once space is back, what was said)."""
    out = work / "full"
    mount = work / "tmpfs"
    mount.mkdir()
    mounted = tmpfs and os.geteuid() == 0
    mounted = mounted and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)]).returncode == 0
    try:
        if mounted:
            out = mount / "run"
            first = run_to_end("run", out, config)
        else:
            first = run_to_end("run", out, config, limit_bytes=16_000)
        lines = [line for line in first.stderr.replace("\r", "\n").splitlines() if "error:" in line]  # past progress bars
        one_line = first.returncode == 1 and len(lines) == 1 and "Traceback" not in first.stderr
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        second = run_to_end("run", out, config)
        same = second.returncode == 0 and summary(out) == reference
        how = "tmpfs of 96 KiB" if mounted else "RLIMIT_FSIZE 16 kB"
        said = lines[0][lines[0].index("error:") :] if lines else first.stderr[-300:]
        return one_line, same, f"{how}: {said!r} (exit {first.returncode}) -> one line: {one_line}; resumed identical: {same}"
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)])


def export_kills(run: Path, work: Path, rng: random.Random, trials: int) -> str:
    """Kill `aa export RUN OUT` at a random moment of it, export again; count the complete exports."""
    export = [sys.executable, "-m", "aa_cli.main", "export", str(run)]
    started = time.perf_counter()
    subprocess.run([*export, str(work / "export-reference")], capture_output=True, env=environment(), check=True)
    length = time.perf_counter() - started
    files = sorted(p.name for p in (work / "export-reference").iterdir())
    complete = finished = 0
    for trial in range(trials):
        out = work / f"export-{trial}"
        proc = subprocess.Popen([*export, str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment())
        time.sleep(rng.uniform(0, length))
        proc.kill()
        proc.wait()
        if out.exists():  # killed after its rename: the export is whole, and a second one is refused, not mixed in
            finished += 1
        else:
            subprocess.run([*export, str(out)], capture_output=True, env=environment())
        leftovers = list(work.glob(".*.export-tmp"))
        complete += out.exists() and sorted(p.name for p in out.iterdir()) == files and not leftovers
    return (f"{complete} of {trials} exports complete after a kill ({finished} killed after they had finished; "
            f"{length:.1f} s each uninterrupted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep-every", type=int, default=5, help="every n-th trial kills `aa sweep` instead")
    parser.add_argument("--no-disk", action="store_true")
    parser.add_argument("--exports", type=int, default=5, help="kills of `aa export`")
    args = parser.parse_args()
    import yaml

    work = Path(tempfile.mkdtemp(prefix="aa-faults-"))
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    rng = random.Random(args.seed)
    try:
        references, seconds, walls = {}, {}, {}
        for kind in ("run", "sweep"):
            started = time.perf_counter()
            done = run_to_end(kind, work / f"reference-{kind}", config)
            assert done.returncode == 0, done.stderr[-2000:]
            references[kind] = summary(work / f"reference-{kind}")
            seconds[kind] = stage_seconds(work / f"reference-{kind}")
            walls[kind] = time.perf_counter() - started
            print(f"uninterrupted {kind}: {time.perf_counter() - started:.1f} s, stages {seconds[kind]}", flush=True)

        print("\n| # | command | stage | delay s | killed in | resumed identical | orphans | undecodable |")
        print("|---|---|---|---|---|---|---|---|")
        kills = identical = orphans = broken = 0
        trial = 0
        while kills < args.kills:
            trial += 1
            kind = "sweep" if args.sweep_every and kills % args.sweep_every == args.sweep_every - 1 else "run"
            stage = rng.choice(STAGES) if kind == "run" else "any"
            length = walls[kind] if kind == "sweep" else seconds[kind].get(stage, 0.0)
            delay = round(rng.uniform(0, max(length, 0.05)), 3)
            out = work / f"trial-{trial}"
            killed, at = run_and_kill(kind, out, config, stage, delay)
            if not killed:  # it finished before the moment came: draw again
                shutil.rmtree(out)
                continue
            kills += 1
            resumed = run_to_end(kind, out, config)
            got = summary(out) if resumed.returncode == 0 else {}
            same = got == references[kind]
            extra = sorted(set(got.get("files", [])) ^ set(references[kind]["files"]))
            bad = undecodable(out)
            identical += same
            orphans += len(extra)
            broken += bad
            print(f"| {kills} | {kind} | {stage} | {delay} | {at} | {same} | {len(extra)} | {bad} |", flush=True)
            if not same and resumed.returncode != 0:
                print(resumed.stderr[-1500:], flush=True)
            shutil.rmtree(out)
        print(f"\n{kills} kills, {identical} identical resumes, {orphans} orphans, {broken} undecodable")
        if args.exports:
            print("export:", export_kills(work / "reference-run", work, rng, args.exports), flush=True)
        if not args.no_disk:
            print("full disk:", disk_full(work, config, references["run"])[2])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
