"""Time and accuracy of the built-in default task (`aa run`) over seeds.

    python benchmarks/demo.py                 # seeds 0 1 2, fresh run folders
    python benchmarks/demo.py --seeds 0 --keep runs/bench

Accuracies are on the test half of the digits' labels (`target_accuracy`); the development half
(`dev_accuracy`, the one tuning may read) is printed beside them. Targets: each run within 5
minutes on 2 CPU cores; test adapt >= 0.90 and refine >= 0.95, each above source only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("source_only", "adapt", "refine")


def meets(seconds: float, acc: dict) -> bool:
    refine = acc.get("refine", 1.0)
    return seconds <= 300 and acc["adapt"] >= 0.90 and refine >= 0.95 and min(acc["adapt"], refine) > acc["source_only"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="keep run folders under this folder")
    parser.add_argument("aa_args", nargs="*", help="extra arguments for `aa run` (after --)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-bench-"))
    models = " ".join(f"{m:>6}" for m in ("source", "adapt", "refine"))
    print(f"{'seed':>4} {'seconds':>8}  test: {models}  dev: {models}  ok")
    for seed in args.seeds:
        out = root / f"seed{seed}"
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "aa_cli.main", "run", "--seed", str(seed), "--out", str(out), *args.aa_args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text())
        test, dev = metrics["target_accuracy"], metrics.get("dev_accuracy", {})
        cells = lambda acc: " ".join(f"{acc.get(m, float('nan')):>6.4f}" for m in MODELS)  # noqa: E731
        print(f"{seed:>4} {seconds:>8.1f}        {cells(test)}       {cells(dev)}  {'yes' if meets(seconds, test) else 'NO'}")


if __name__ == "__main__":
    main()
