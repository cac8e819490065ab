"""Which label-free rule keeps the best of the models a run produced? The regret of each, on six real pairs.

    python benchmarks/final_model.py --keep runs/final            # six pairs, seeds 0 1 2
    python benchmarks/final_model.py --keep runs/final --pairs photo --seeds 0

Each pair of ``real_pairs.py`` (small and large, easy and hard: digits, photographed and
corrupted digits, two pairs of icon themes) runs with the default algorithms (DANN, FixMatch)
once per seed; a run folder that holds ``metrics.json`` is read, not run again. Every run records
each candidate's label-free evidence and its dev and test accuracy (``metrics.json``), so every
rule of ``aa_core.final_model.RULES`` is measured on the same runs:

* **regret**: the best candidate's dev accuracy minus the kept one's (dev: the half a rule may be
  chosen on), in points; the aims are a mean <= 1, no run above 3;
* **below start**: how many runs kept a model more than 1 point below the start (the source-only
  model) on the dev half.

The rule with the lowest worst-case regret (ties: the lower mean) is the one to make ``AUTO``.
The first table lists every run: each candidate's dev accuracy and the model each rule keeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from real_pairs import PAIRS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from aa_core.final_model import AUTO, EVIDENCE, RULES, START, Evidence, choose  # noqa: E402

SHORT = {"source_only": "start", "adapt": "adapt", "refine": "refine", "zero_shot": "zs"}


def metrics(out: Path, seed: int, args: list[str]) -> dict:
    """The run's ``metrics.json``, running it first where it has none, and its evaluation again
    where it records less evidence than the rules read (an older aa's run: seconds, no training)."""
    path = out / "metrics.json"
    if path.is_file() and any(set(EVIDENCE) - set(values) for values in json.loads(path.read_text())["label_free"].values()):
        path.rename(out / "metrics.older.json")  # the evaluate stage runs again where its output is missing
    if not path.is_file():
        cmd = [sys.executable, "-m", "aa_cli.main", "run", "--seed", str(seed), "--out", str(out), *args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(path.read_text())


def evidence(m: dict) -> Evidence:
    """The label-free evidence a run recorded, as the evaluate stage hands it to the rule."""
    return Evidence(m["label_free"], m.get("split", {}).get("reliable"))


def regrets(m: dict) -> dict[str, tuple[str, float, float]]:
    """Per rule: (the model it keeps, its regret, the start minus it) on the dev half, in points."""
    dev = m["dev_accuracy"]
    best, out = max(dev.values()), {}
    for name in RULES:
        kept = choose("auto", evidence(m), name).model
        out[name] = (kept, 100 * (best - dev[kept]), 100 * (dev[START] - dev[kept]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--keep", type=Path, help="keep data and run folders under this folder")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-final-"))
    table: dict[str, list[tuple[float, float]]] = {name: [] for name in RULES}
    rules = list(RULES)
    print(f"{'pair':<21} {'seed':>4}  dev: start  adapt refine  reliable  " + " ".join(f"{r.replace('split+', 's+'):>10}" for r in rules))
    for seed in args.seeds:  # every pair's seed 0 first: a stopped benchmark has said something of each
        for pair in args.pairs:
            m = metrics(root / pair / f"seed{seed}", seed, PAIRS[pair](root / "data"))
            dev, measured = m["dev_accuracy"], regrets(m)
            for name, (_, regret, below) in measured.items():
                table[name].append((regret, below))
            kept = [SHORT[measured[name][0]] for name in rules]
            print(f"{pair:<21} {seed:>4}  {dev[START]:>10.4f} {dev['adapt']:>6.4f} {dev['refine']:>6.4f}"
                  f"  {str(m['split']['reliable']):>8}  " + " ".join(f"{k:>10}" for k in kept))  # fmt: skip
    print(f"\n{'rule':<22} {'mean regret':>11} {'max regret':>10} {'runs > 3':>8} {'below start > 1':>15}"
          f"   (dev points, {len(table[AUTO])} runs)")  # fmt: skip
    order = sorted(rules, key=lambda r: (max(v[0] for v in table[r]), statistics.mean(v[0] for v in table[r])))
    for name in order:
        values = table[name]
        print(f"{name + (' (auto)' if name == AUTO else ''):<22} {statistics.mean(v[0] for v in values):>11.2f} "
              f"{max(v[0] for v in values):>10.2f} {sum(v[0] > 3 for v in values):>8} {sum(v[1] > 1 for v in values):>15}")  # fmt: skip


if __name__ == "__main__":
    main()
