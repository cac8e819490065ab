"""Shared helpers: run the real ``aa`` command line in a subprocess, with chosen fake plugins."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tomllib
from forkserver import Zygote
from PIL import Image

if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # pytest -n: one thread per worker, here and in the aa subprocesses it starts, or the
    # workers' BLAS threads outnumber the cores and every test slows many times over
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

FAKE_DISTS = Path(__file__).parent / "fake_dists"
EXAMPLES = Path(__file__).parent.parent / "examples"
TINY = {
    "prompts": {"per_class": 3},
    "generator": {"images_per_class": 6},
    "source_only": {"steps": 10},
    "train": {"batch_size": 8, "steps": 10, "refine_steps": 5},
}


@functools.cache
def example_dist(name: str) -> list[Path]:
    """``examples/<name>`` as an installed distribution: its code, and a dist-info made from its pyproject.

    The dist-info lives in a folder named by the pyproject's digest, made once (atomically: test
    workers race for it) and reused by later sessions, so test runs do not pile folders up in /tmp.
    """
    text = (EXAMPLES / name / "pyproject.toml").read_text()
    project = tomllib.loads(text)["project"]
    home = Path(tempfile.gettempdir()) / f"aa-example-{os.getuid()}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    if not home.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f"{home.name}.", dir=home.parent))
        info = staging / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
        groups = project["entry-points"]
        (info / "entry_points.txt").write_text(
            "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items())
        )
        try:
            staging.rename(home)
        except OSError:  # another worker made it first
            shutil.rmtree(staging)
    return [EXAMPLES / name, home]


def plugin_path(fake: str) -> list[Path]:
    return example_dist(fake.removeprefix("example:")) if fake.startswith("example:") else [FAKE_DISTS / fake]


def aa(*args, fakes=(), env=None, cwd=None, check=None) -> subprocess.CompletedProcess:
    """Run ``aa ARGS`` with the fake distributions ``fakes`` on the path; return the finished process.

    ``fakes`` names folders of ``tests/fake_dists``, or ``example:<name>`` for ``examples/<name>``.
    The process is a fork of one that has imported torch, torchvision and timm already
    (``forkserver``), or a fresh interpreter where a fork could not be the same.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AA_")}
    environment["PYTHONPATH"] = os.pathsep.join(str(p) for f in fakes for p in plugin_path(f))
    environment.update(env or {})
    args = list(map(str, args))
    proc = zygote().run(args, environment, None if cwd is None else str(cwd), timeout=600)
    if proc is None:
        proc = subprocess.run(
            [sys.executable, "-m", "aa_cli.main", *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=600
        )
    if check is not None:
        assert proc.returncode == check, proc.stderr[-3000:]
    return proc


@functools.cache
def zygote() -> Zygote:
    return Zygote({**{k: v for k, v in os.environ.items() if not k.startswith("AA_")}, "PYTHONPATH": ""})


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


@pytest.fixture(scope="session")
def stable_diffusion(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion pipeline folder (64x64 images), as ``save_pretrained`` writes one."""
    from tiny_models import tiny_stable_diffusion

    return tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "pipe")


@pytest.fixture(scope="session")
def stable_diffusion_with_checker(tmp_path_factory) -> Path:
    """The same with a safety checker that withholds about half of the images."""
    from tiny_models import tiny_stable_diffusion

    return tiny_stable_diffusion(tmp_path_factory.mktemp("sd-checked") / "pipe", safety_checker=True)


@pytest.fixture(scope="session")
def clip_model(tmp_path_factory) -> Path:
    """A tiny CLIPModel folder with its processor."""
    from tiny_models import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("clip") / "model")


@pytest.fixture(scope="session")
def glide_model(tmp_path_factory) -> Path:
    """A tiny GLIDE base model and upsampler, saved as GLIDE's checkpoints are, with their options."""
    pytest.importorskip("glide_text2im", reason="glide-text2im is not installed (pip install ../shared/third_party/glide-text2im)")
    from tiny_models import tiny_glide

    return tiny_glide(tmp_path_factory.mktemp("glide") / "model")


def assert_same_image(a, b) -> None:
    """The same picture up to the floating-point rounding of a batched pass, which a random tiny
    model amplifies here and there (another seed differs by about 100 levels on average)."""
    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    assert a.shape == b.shape
    differ = np.abs(a - b)
    assert differ.mean() < 0.5 and (differ > 2).mean() < 5e-3, (differ.mean(), (differ > 2).mean())


def built(cls, model, **options):
    """A generator plugin's class built as the generate stage builds it, on the CPU."""
    import torch

    from aa_core.api import GeneratorContext

    return cls(cls.Options(**options), GeneratorContext(str(model), [], torch.device("cpu")))
