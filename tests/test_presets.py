"""The ready configurations of examples/datasets run every stage, as written, on a stand-in target.

Each preset keeps its own categories, domain, input format (224 px, colour), algorithms and
precision; only what a test machine cannot have changes: the generator's model (a tiny local
diffusers pipeline instead of a hub one), the backbone (timm's tiny ``test_resnet``, of the
ResNet family the presets name, not pretrained), the counts (one prompt and one image per
category, two steps of each training) and the batch. The target is a folder of small images made
here, one class folder per category of the preset.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import aa, read_json
from PIL import Image

PRESETS = sorted((Path(__file__).parent.parent / "examples" / "datasets").glob("*.yaml"))


def stand_in_target(root: Path, categories: list[str]) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(categories):
        (root / name).mkdir(parents=True)
        pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) // 2 + np.uint8(k % 128)
        Image.fromarray(pixels).save(root / name / "0.jpg")
    return root


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_a_preset_runs_every_stage(tmp_path, preset, stable_diffusion):
    config = yaml.safe_load(preset.read_text())
    assert config["model"]["backbone"].startswith("resnet") and config["data"]["image_size"] == 224
    target = stand_in_target(tmp_path / "target", config["task"]["categories"])
    sets = [
        f"generator.model={stable_diffusion}", "generator.steps=2", "generator.batch_size=16", "generator.images_per_class=1",
        "prompts.per_class=1", "model.backbone=test_resnet", "model.pretrained=false", "train.batch_size=2",
        "source_only.steps=2", "train.steps=2", "train.refine_steps=2", "data.num_workers=0",
    ]  # fmt: skip
    out = tmp_path / "run"
    aa("run", "--config", preset, "--target", target, "--out", out, *[a for s in sets for a in ("--set", s)], check=0)
    metrics = read_json(out / "metrics.json")
    assert metrics["target_images"] == len(config["task"]["categories"])
    assert set(metrics["target_accuracy"]) == {"source_only", "adapt", "refine"}
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["task"]["domain"] == config["task"]["domain"] and recorded["train"]["mixed_precision"] == "bf16"
