"""Shared helpers: run the real ``aa`` command line in a subprocess, with chosen fake plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FAKE_DISTS = Path(__file__).parent / "fake_dists"
TINY = {
    "prompts": {"per_class": 3},
    "generator": {"images_per_class": 6},
    "train": {"batch_size": 8, "source_steps": 10, "steps": 10, "refine_steps": 5},
}


def aa(*args, fakes=(), env=None, cwd=None, check=None) -> subprocess.CompletedProcess:
    """Run ``aa ARGS`` with the fake distributions ``fakes`` on the path; return the finished process."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AA_")}
    environment["PYTHONPATH"] = os.pathsep.join(str(FAKE_DISTS / f) for f in fakes)
    environment.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "aa_cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=600,
    )
    if check is not None:
        assert proc.returncode == check, proc.stderr[-3000:]
    return proc


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="session")
def small_target(tmp_path_factory) -> Path:
    """60 of the UCI digits as a labelled image folder (6 per class), as a user would have them."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("target")
    digits = load_digits()
    for label in range(10):
        for i in np.flatnonzero(digits.target == label)[:6]:
            (root / str(label)).mkdir(exist_ok=True)
            Image.fromarray((255 - digits.images[i] * 255 / 16).astype(np.uint8)).save(root / str(label) / f"{i}.png")
    return root


def stage_lines(stderr: str) -> dict[str, str]:
    """``[stage] done in ...`` / ``[stage] reused`` lines -> {stage: "done" | "reused"}."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("[") and "] " in line:
            stage, rest = line[1:].split("] ", 1)
            if rest != "running":
                out[stage] = rest.split()[0]
    return out


def read_json(path: Path):
    return json.loads(Path(path).read_text())
