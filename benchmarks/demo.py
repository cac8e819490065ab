"""Time and accuracy of the built-in default task (`aa run`) over seeds.

    python benchmarks/demo.py                 # seeds 0 1 2, fresh run folders
    python benchmarks/demo.py --seeds 0 --keep runs/bench

Accuracies are on the test half of the digits' labels (`target_accuracy`); the development half
(`dev_accuracy`, the one tuning may read) is printed beside them. Targets: each run within 5
minutes on 2 CPU cores; test adapt >= 0.90 and refine >= 0.95, each above source only.
"""

from __future__ import annotations

from seeded_runs import parse, seeded_runs

MODELS = ("source_only", "adapt", "refine")


def meets(seconds: float, acc: dict) -> bool:
    refine = acc.get("refine", 1.0)
    return seconds <= 300 and acc["adapt"] >= 0.90 and refine >= 0.95 and min(acc["adapt"], refine) > acc["source_only"]


def main() -> None:
    args, root = parse(__doc__)
    models = " ".join(f"{m:>6}" for m in ("source", "adapt", "refine"))
    print(f"{'seed':>4} {'seconds':>8}  test: {models}  dev: {models}  ok")
    for seed, seconds, metrics in seeded_runs(root, args.seeds, args.aa_args):
        test, dev = metrics["target_accuracy"], metrics.get("dev_accuracy", {})
        cells = lambda acc: " ".join(f"{acc.get(m, float('nan')):>6.4f}" for m in MODELS)  # noqa: E731
        print(f"{seed:>4} {seconds:>8.1f}        {cells(test)}       {cells(dev)}  {'yes' if meets(seconds, test) else 'NO'}")


if __name__ == "__main__":
    main()
