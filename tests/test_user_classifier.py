"""``model.init``: the user's own classifier (a tiny transformers ViT with ``id2label``) as the
run's start: its labels matched to the run's categories by name, its head's rows in the run's order."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import aa, read_json
from PIL import Image

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A classifier of 12 labels (the digits and two the run does not use), and the same network
    with its labels in another order: its classifier's rows permuted to match."""
    from tiny_models import tiny_vit_classifier
    from transformers import ViTForImageClassification

    root = tmp_path_factory.mktemp("init")
    labels = ["cat", *DIGITS, "dog"]
    first = tiny_vit_classifier(root / "first", labels)
    model = ViTForImageClassification.from_pretrained(first)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[order])
        model.classifier.bias.copy_(model.classifier.bias[order])
    model.config.id2label = {i: labels[k] for i, k in enumerate(order.tolist())}
    model.config.label2id = {name: i for i, name in model.config.id2label.items()}
    second = root / "second"
    model.save_pretrained(second)
    (second / "preprocessor_config.json").write_text((first / "preprocessor_config.json").read_text())
    return first, second


def test_the_run_starts_from_the_users_classifier_as_it_is(tmp_path, tiny_config, small_target, checkpoints):
    """source_only.steps=0: the source-only model's logits are the checkpoint's own, its columns of the
    run's categories in their order; a checkpoint with its labels in another order predicts alike."""
    from transformers import AutoImageProcessor, ViTForImageClassification

    from aa_core.runs import Run

    first, second = checkpoints
    runs = []
    for name, checkpoint in (("first", first), ("second", second)):
        out = tmp_path / name
        aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", f"model.init={checkpoint}",
           "--set", "source_only.steps=0", "--uda", "none", "--ssl", "none", check=0)  # fmt: skip
        runs.append(Run.open(out))
    paths = [str(p) for p in runs[0].target.paths]
    images = [Image.open(p).convert("RGB") for p in paths]
    pixels = AutoImageProcessor.from_pretrained(first)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        theirs = ViTForImageClassification.from_pretrained(first).eval()(pixel_values=pixels).logits[:, 1:11]  # the digits' columns
        ours = [run.model("source_only")(pixels) for run in runs]
    torch.testing.assert_close(ours[0], theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], theirs, atol=1e-5, rtol=1e-5)
    assert runs[0].config.data.image_size == 32 and runs[0].config.data.channels == 3
    a, b = (read_json(run.folder.metrics) for run in runs)
    assert a["target_accuracy"] == b["target_accuracy"]
    assert (runs[0].folder.predictions.read_text()) == (runs[1].folder.predictions.read_text())


def test_every_stage_after_it_adapts_and_refines_it(tmp_path, tiny_config, small_target, checkpoints):
    from transformers import ViTForImageClassification

    from aa_core.runs import Run

    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", f"model.init={checkpoints[0]}", check=0)
    run = Run.open(out)
    start, adapted, refined = (run.model(stage).state_dict() for stage in ("source_only", "adapt", "refine"))
    assert any(not torch.equal(start[k], adapted[k]) for k in start if k.startswith("backbone."))
    assert any(not torch.equal(adapted[k], refined[k]) for k in adapted if k.startswith("backbone."))
    metrics = read_json(out / "metrics.json")
    # the user's classifier as it came is a candidate of its own: source-only training changed it
    assert set(metrics["target_accuracy"]) == set(metrics["label_free"]) == {"init", "source_only", "adapt", "refine"}
    assert metrics["final"]["model"] in metrics["label_free"]
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        theirs = ViTForImageClassification.from_pretrained(checkpoints[0]).eval()(pixel_values=pixels).logits[:, 1:11]
        torch.testing.assert_close(run.model("init")(pixels), theirs, atol=1e-5, rtol=1e-5)


def test_shot_adapts_the_users_classifier_from_the_target_alone_without_prompts_or_images(tmp_path, tiny_config, small_target, checkpoints):
    from aa_core.runs import Run

    settings = yaml.safe_load(tiny_config.read_text())
    del settings["source_only"]  # left to SHOT: no source-only training of the user's classifier
    tiny_config.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", f"model.init={checkpoints[0]}",
              "--uda", "shot", "--ssl", "none", check=0)  # fmt: skip
    assert "[prompts]" not in proc.stdout + proc.stderr and "[generate]" not in proc.stdout + proc.stderr
    assert not (out / "prompts.jsonl").exists() and not (out / "source").exists()
    assert list(read_json(out / "stages.json")) == ["source_only", "adapt", "evaluate"]
    run = Run.open(out)
    assert run.config.source_only.steps == 0 and "prompter" not in yaml.safe_load((out / "config.yaml").read_text())["plugins"]
    start, adapted = (run.model(stage).state_dict() for stage in ("source_only", "adapt"))
    heads = [k for k in start if k.startswith("head.")]
    assert heads and all(torch.equal(start[k], adapted[k]) for k in heads)  # the source hypothesis as it came
    assert any(not torch.equal(start[k], adapted[k]) for k in start if k.startswith("backbone."))
    until = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", f"model.init={checkpoints[0]}",
               "--uda", "shot", "--ssl", "none", "--until", "generate", check=1)  # fmt: skip
    assert until.stderr.strip() == "error: stage generate does not run where no training reads a source (model.init, uda shot); " \
                                   "change the config or pick another stage"


def test_a_category_the_checkpoint_lacks_or_a_second_network_is_one_line(tmp_path, tiny_config, small_target, checkpoints):
    out = tmp_path / "run"
    base = ("--config", tiny_config, "--target", small_target, "--out", out, "--set", f"model.init={checkpoints[0]}")
    missing = aa("run", *base, "--set", "task.categories=[0,1,2,3,4,5,6,7,8,eleven]", check=1)
    assert missing.stderr.strip().splitlines()[-1] == (
        f"error: model.init {checkpoints[0]} has no label 'eleven' (its labels: cat, 0, 1, 2, 3, 4, ...); "
        "name the categories as its labels (task.categories), or give a checkpoint that knows them"
    )
    assert not (out / "prompts.jsonl").exists()
    both = aa("run", *base, "--set", "model.backbone=resnet18", check=1)
    assert "leave model.backbone unset" in both.stderr.strip().splitlines()[-1]
    nothing = aa("run", *base[:-1], f"model.init={tmp_path / 'nothing'}", check=1)
    assert nothing.stderr.strip().splitlines()[-1].startswith(f"error: cannot load model.init {tmp_path / 'nothing'}: ")
    assert "Traceback" not in missing.stderr + both.stderr + nothing.stderr


def test_a_timm_checkpoint_with_its_label_names_starts_the_run_as_it_is(tmp_path, tiny_config, small_target):
    """timm's save_for_hf folder: its labels (in another order than the run's) matched by name, its
    pretrained config's size and normalisation; at step 0 the logits are timm's own columns."""
    import timm
    from tiny_models import tiny_timm_classifier

    from aa_core.runs import Run

    labels = [*reversed(DIGITS), "other"]
    checkpoint = tiny_timm_classifier(tmp_path / "timm", labels)
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", f"model.init={checkpoint}",
       "--set", "source_only.steps=0", "--uda", "none", "--ssl", "none", check=0)  # fmt: skip
    run = Run.open(out)
    assert run.config.data.image_size == 32 and run.input_format().std == (0.25, 0.25, 0.25)
    x = torch.randn(4, 3, 32, 32)
    theirs = timm.create_model(f"local-dir:{checkpoint}", pretrained=True).eval()
    with torch.no_grad():
        expected = theirs(x)[:, [labels.index(d) for d in DIGITS]]
        torch.testing.assert_close(run.model("source_only")(x), expected, atol=1e-5, rtol=1e-5)
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    config = json.loads((checkpoint / "config.json").read_text())
    config.pop("label_names", None)
    config.get("pretrained_cfg", {}).pop("label_names", None)
    (unnamed / "config.json").write_text(json.dumps(config))
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", tmp_path / "r2", "--set", f"model.init={unnamed}", check=1)
    assert "is a timm checkpoint without label names" in proc.stderr.strip().splitlines()[-1]
