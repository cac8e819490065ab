"""What the benchmarks share: their command line, and one timed `aa run` per seed."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def parse(doc: str) -> tuple[argparse.Namespace, Path]:
    """``--seeds``, ``--keep`` and extra ``aa run`` arguments; the root folder for the runs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--keep", type=Path, help="keep data and run folders under this folder")
    parser.add_argument("aa_args", nargs="*", help="extra arguments for `aa run` (after --)")
    args = parser.parse_args()
    return args, args.keep or Path(tempfile.mkdtemp(prefix="aa-bench-"))


def seeded_runs(root: Path, seeds: list[int], aa_args: list[str]) -> Iterator[tuple[int, float, dict]]:
    """Run `aa run` fresh in ``root/seed<N>`` for each seed; yield (seed, seconds, metrics)."""
    for seed in seeds:
        out = root / f"seed{seed}"
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "aa_cli.main", "run", "--seed", str(seed), "--out", str(out), *aa_args]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield seed, time.perf_counter() - started, json.loads((out / "metrics.json").read_text())
