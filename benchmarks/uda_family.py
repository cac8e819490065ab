"""Every UDA algorithm on the default task, each followed by no SSL, FixMatch and MixMatch.

    python benchmarks/uda_family.py [--seeds 0 1 2] [--uda dann mcd symnets cdtrans] [--keep DIR]

For each algorithm and seed, one run folder: `aa run --uda X --ssl none`, then `--ssl fixmatch`
and `--ssl mixmatch` in the same folder (they reuse the adaptation). Prints, per run, test-half
accuracy (dev half in parentheses) after source-only training, adaptation and each refinement,
then per algorithm the median over seeds and adapt's gain over its own source-only model.
The issue's bar: gain >= 3 points for every algorithm; cdtrans + mixmatch refine >= 0.95 on seed 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SSL = ("none", "fixmatch", "mixmatch")


def run(out: Path, seed: int, uda: str, ssl: str) -> tuple[float, dict]:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "aa_cli.main", "run", "--seed", str(seed), "--uda", uda, "--ssl", ssl, "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads((out / "metrics.json").read_text())


def cell(metrics: dict, key: str) -> str:
    return f"{metrics['target_accuracy'][key]:.4f} ({metrics['dev_accuracy'][key]:.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--uda", nargs="+", default=["dann", "mcd", "symnets", "cdtrans"])
    parser.add_argument("--keep", type=Path, help="keep the run folders under this folder")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-uda-"))
    print("| uda | seed | source_only | adapt | refine fixmatch | refine mixmatch | adapt s |")
    print("|---|---|---|---|---|---|---|")
    gains: dict[str, list[float]] = {}
    for uda in args.uda:
        for seed in args.seeds:
            out = root / uda / f"seed{seed}"
            seconds, adapted = run(out, seed, uda, "none")
            refined = {ssl: run(out, seed, uda, ssl)[1] for ssl in SSL[1:]}
            gains.setdefault(uda, []).append(adapted["target_accuracy"]["adapt"] - adapted["target_accuracy"]["source_only"])
            print(
                f"| {uda} | {seed} | {cell(adapted, 'source_only')} | {cell(adapted, 'adapt')} | "
                f"{cell(refined['fixmatch'], 'refine')} | {cell(refined['mixmatch'], 'refine')} | {adapted['seconds']['adapt']:.0f} |",
                flush=True,
            )
    print()
    for uda, values in gains.items():
        median = statistics.median(values)
        verdict = "meets" if median >= 0.03 else "misses"
        print(f"{uda}: adapt - source_only, median over seeds {args.seeds}: {median * 100:+.1f} points ({verdict} +3)")


if __name__ == "__main__":
    main()
