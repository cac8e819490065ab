"""Time and accuracy of the built-in default task (`aa run`) over seeds.

    python benchmarks/demo.py                 # seeds 0 1 2, fresh run folders
    python benchmarks/demo.py --seeds 0 --keep runs/bench

Targets (issue 2): each run within 5 minutes on 2 CPU cores; target_accuracy.adapt >= 0.90 and
target_accuracy.refine >= 0.95, each above source_only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="keep run folders under this folder")
    parser.add_argument("aa_args", nargs="*", help="extra arguments for `aa run` (after --)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-bench-"))
    print(f"{'seed':>4} {'seconds':>8} {'source_only':>11} {'adapt':>6} {'refine':>6}  ok")
    for seed in args.seeds:
        out = root / f"seed{seed}"
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "aa_cli.main", "run", "--seed", str(seed), "--out", str(out), *args.aa_args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        acc = json.loads((out / "metrics.json").read_text())["target_accuracy"]
        ok = (
            seconds <= 300
            and acc["adapt"] >= 0.90
            and acc.get("refine", 1) >= 0.95
            and acc["adapt"] > acc["source_only"]
            and acc.get("refine", 1) > acc["source_only"]
        )
        print(f"{seed:>4} {seconds:>8.1f} {acc['source_only']:>11.4f} {acc['adapt']:>6.4f} {acc.get('refine', float('nan')):>6.4f}  {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
