"""Does the label-free choice of the final model keep the better of adapt and refine?

    python benchmarks/final_model.py                      # three pairs, seeds 0 1 2
    python benchmarks/final_model.py --keep runs/final    # keep the runs; a rerun reuses them

Three pairs, each run with the default algorithms (DANN, FixMatch):

* ``digits``: the built-in default task (glyph-rendered digits -> the UCI digits);
* ``photo``: real digits -> the same digits blended into photographs (``harder_pair.py``);
* ``glyph-photo``: glyph-rendered digits -> those photographs: a synthetic source, a hard target.

For each run it prints the dev and test accuracy of the adapted and refined models, the split's
reliability, the label-free criteria of both models, the model ``final_model.choose`` keeps and
whether it is the better one by the dev half (the half a rule may be chosen on) and by the test
half. The summary counts, per pair, how often the rule kept the better model and what it cost
(accuracy lost against always refining, where refining helped).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from harder_pair import TRAIN_SIZE, build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from aa_core.final_model import choose  # noqa: E402

PHOTO = ["--set", f"data.image_size={TRAIN_SIZE}", "--set", "data.channels=3", "--set", "data.fill=0",
         "--set", "data.dev_fraction=0.5", "--set", "train.steps=1000"]  # fmt: skip


def pairs(data: Path) -> dict[str, list[str]]:
    source, target = build(data)
    return {
        "digits": [],
        "photo": ["--source", str(source), "--target", str(target), *PHOTO],
        "glyph-photo": ["--target", str(target), *PHOTO],
    }


def run(out: Path, seed: int, args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "aa_cli.main", "run", "--seed", str(seed), "--out", str(out), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", nargs="+", default=["digits", "photo", "glyph-photo"])
    parser.add_argument("--keep", type=Path, help="keep data and run folders under this folder")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="aa-final-"))
    print(f"{'pair':<12} {'seed':>4}  dev: adapt refine  test: adapt refine  reliable  snd: adapt refine  kept    dev-better test-better")
    summary: dict[str, list[tuple[bool, bool, float]]] = {}
    chosen = {pair: extra for pair, extra in pairs(root / "data").items() if pair in args.pairs}
    for seed in args.seeds:  # every pair's seed 0 first: a stopped benchmark has said something of each
        for pair, extra in chosen.items():
            m = run(root / pair / f"seed{seed}", seed, extra)
            dev, test, crit = m["dev_accuracy"], m["target_accuracy"], m["label_free"]
            kept, _ = choose("auto", m["split"]["reliable"])
            better = lambda acc, kept=kept: acc[kept] >= max(acc["adapt"], acc["refine"])  # noqa: E731
            cost = max(0.0, test["refine"] - test[kept])  # what keeping cost where refining helped
            summary.setdefault(pair, []).append((better(dev), better(test), cost))
            print(
                f"{pair:<12} {seed:>4}  {dev['adapt']:>10.4f} {dev['refine']:>6.4f}  {test['adapt']:>11.4f} {test['refine']:>6.4f}"
                f"  {str(m['split']['reliable']):>8}  {crit['adapt']['snd']:>10.4f} {crit['refine']['snd']:>6.4f}"
                f"  {kept:<7} {'yes' if better(dev) else 'NO':>10} {'yes' if better(test) else 'NO':>11}"
            )
    print("\npair          kept the better (dev)  (test)  test accuracy lost against refining")
    for pair, rows in summary.items():
        n = len(rows)
        print(f"{pair:<12} {sum(r[0] for r in rows):>15}/{n} {sum(r[1] for r in rows):>6}/{n}  {sum(r[2] for r in rows) / n:>10.4f}")


if __name__ == "__main__":
    main()
