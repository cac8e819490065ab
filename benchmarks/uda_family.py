"""Every UDA algorithm on the default task, each refined by FixMatch and by MixMatch, over seeds.

    python benchmarks/uda_family.py ROOT [--seeds 0 1 2] [--uda dann mcd symnets cdtrans]

Reads the UDA x SSL sweep under ROOT (``aa sweep ROOT --grid-file benchmarks/default-grid.yaml
--seeds 0,1,2``, the grid `aa compare --select` ranks too); where a member of the requested grid
has not finished, it runs ``aa sweep`` on ROOT first, which resumes and shares generation,
source-only training and each adaptation between its members. Prints, per algorithm and seed,
test-half accuracy (dev half in parentheses) after source-only training, adaptation and each
refinement, then per algorithm the median over seeds of adapt's gain over its own source-only
model (test half); `aa compare ROOT` has the times. The issue's bar: gain >= 3 points for every
algorithm; cdtrans + mixmatch refine >= 0.95 on seed 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

SSL = ("fixmatch", "mixmatch")


def member(root: Path, uda: str, ssl: str, seed: int) -> Path:
    """The run folder `aa sweep` gives this member (``aa_results.sweep.Member.folder``)."""
    return root / f"uda.name={uda}__ssl.name={ssl}" / f"seed{seed}"


def sweep(root: Path, udas: list[str], seeds: list[int]) -> None:
    cmd = [sys.executable, "-m", "aa_cli.main", "sweep", str(root), "--grid", f"uda.name={','.join(udas)}",
           "--grid", f"ssl.name={','.join(SSL)}", "--seeds", ",".join(map(str, seeds))]  # fmt: skip
    subprocess.run(cmd, check=True)


def cell(metrics: dict, key: str) -> str:
    return f"{metrics['target_accuracy'][key]:.4f} ({metrics['dev_accuracy'][key]:.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the sweep's root (run by this script where unfinished)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--uda", nargs="+", default=["dann", "mcd", "symnets", "cdtrans"])
    args = parser.parse_args()
    runs = {(u, s, seed): member(args.root, u, s, seed) / "metrics.json" for u in args.uda for s in SSL for seed in args.seeds}
    if not all(path.is_file() for path in runs.values()):
        sweep(args.root, args.uda, args.seeds)
    metrics = {key: json.loads(path.read_text()) for key, path in runs.items()}

    print("| uda | seed | source only | adapt | refine FixMatch | refine MixMatch |")
    print("|---|---|---|---|---|---|")
    gains: dict[str, list[float]] = {}
    for uda in args.uda:
        for seed in args.seeds:
            fix, mix = metrics[uda, "fixmatch", seed], metrics[uda, "mixmatch", seed]
            # both members adopted one adaptation: their source-only and adapt figures are one model's
            for model in ("source_only", "adapt"):
                if fix["target_accuracy"][model] != mix["target_accuracy"][model]:
                    sys.exit(f"error: {uda} seed {seed}: the FixMatch and MixMatch runs disagree on {model}; were they one sweep?")
            acc = fix["target_accuracy"]
            gains.setdefault(uda, []).append(acc["adapt"] - acc["source_only"])
            print(f"| {uda} | {seed} | {cell(fix, 'source_only')} | {cell(fix, 'adapt')} | {cell(fix, 'refine')} | {cell(mix, 'refine')} |")
    print()
    for uda, values in gains.items():
        median = statistics.median(values)
        verdict = "meets" if median >= 0.03 else "misses"
        print(f"{uda}: adapt - source only (test half), median over seeds {args.seeds}: {median * 100:+.1f} points ({verdict} +3)")
    if ("cdtrans", "mixmatch", 0) in metrics:
        refine = metrics["cdtrans", "mixmatch", 0]["target_accuracy"]["refine"]
        print(f"cdtrans + mixmatch, seed 0: refine {refine:.4f} (test half; {'meets' if refine >= 0.95 else 'misses'} 0.95)")


if __name__ == "__main__":
    main()
