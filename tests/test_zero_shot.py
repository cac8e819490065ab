"""The zero-shot row: a vision-language model (``--vlm clip``, aa-vlm) classifies the target from
the category names, in every run's table, from tiny CLIP and SigLIP models built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import aa, read_json, stage_lines
from PIL import Image

from aa_core.contracts import VLMContext


@pytest.fixture(scope="module")
def siglip_model(tmp_path_factory):
    from tiny_models import tiny_siglip

    return tiny_siglip(tmp_path_factory.mktemp("siglip") / "model")


def vlm_of(path):
    from aa_vlm.transformers_vlm import TransformersVLM

    return TransformersVLM(TransformersVLM.Options(model=str(path)), VLMContext(device=torch.device("cpu")))


def images(small_target, n=6):
    paths = sorted(small_target.rglob("*.png"))[:n]
    return paths, [Image.open(p).convert("RGB") for p in paths]


@pytest.mark.parametrize("which", ["clip", "siglip"])
def test_zero_shot_logits_are_transformers_own_logits_per_image(which, clip_model, siglip_model, small_target):
    """One text per category: s cos(f(x), w_c) + b equals the model's logits_per_image for the same texts (to 1e-5)."""
    from transformers import AutoModelForZeroShotImageClassification, AutoProcessor

    from aa_core.zero_shot import image_logits, text_weights

    path = {"clip": clip_model, "siglip": siglip_model}[which]
    texts = {"0": ["a handwritten digit of a 0"], "1": ["a handwritten digit of a 1"], "7": ["a handwritten digit of a 7"]}
    paths, pictures = images(small_target)
    vlm = vlm_of(path)
    head = {"weights": text_weights(vlm, texts, batch_size=2), "scale": torch.tensor(vlm.logit_scale), "bias": torch.tensor(vlm.logit_bias)}
    ours = image_logits(vlm, head, [str(p) for p in paths], batch_size=4, num_workers=0, show=False)

    processor, model = AutoProcessor.from_pretrained(path), AutoModelForZeroShotImageClassification.from_pretrained(path).eval()
    padding = "max_length" if which == "siglip" else True
    inputs = processor(text=[t[0] for t in texts.values()], images=pictures, return_tensors="pt", padding=padding, truncation=True)
    with torch.no_grad():
        theirs = model(**inputs).logits_per_image
    assert ours.shape == (6, 3)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    if which == "siglip":
        assert vlm.logit_bias == pytest.approx(-0.7) and vlm.logit_scale == pytest.approx(torch.tensor(1.2).exp().item())


def test_a_category_of_several_texts_has_the_normalised_mean_of_their_normalised_embeddings(clip_model):
    """The prompt ensemble, by hand: w_c = mean(g(t)/|g(t)|) / |mean(...)|."""
    from aa_core.zero_shot import text_weights

    vlm = vlm_of(clip_model)
    texts = {"cat": ["a cat", "a photo of a cat", "a small cat"], "dog": ["a dog"]}
    w = text_weights(vlm, texts, batch_size=2)
    g = vlm.embed_texts(["a cat", "a photo of a cat", "a small cat", "a dog"])
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4))
    mean = (g[0] + g[1] + g[2]) / 3
    torch.testing.assert_close(w[0], mean / mean.norm())
    torch.testing.assert_close(w[1], g[3])
    assert not torch.allclose(w[0], g[0])  # the mean, not the first text


def test_a_run_with_a_vlm_reports_the_zero_shot_row_and_a_rerun_reads_it_back(tmp_path, tiny_config, small_target, clip_model):
    out = tmp_path / "run"
    args = ("--config", tiny_config, "--target", small_target, "--out", out, "--vlm", "clip", "--set", f"vlm.model={clip_model}")
    proc = aa("run", *args, check=0)
    metrics = read_json(out / "metrics.json")
    assert list(metrics["target_accuracy"]) == ["zero_shot", "source_only", "adapt", "refine"]
    assert set(metrics["label_free"]) == {"zero_shot", "source_only", "adapt", "refine"}
    assert "  zero_shot " in proc.stdout
    # the row is the stored logits' argmax, computed by hand from the files the run kept
    from safetensors.torch import load_file

    logits = load_file(out / "zero_shot.safetensors")["logits"]
    head = load_file(out / "zero_shot_head.safetensors")
    assert logits.shape == (60, 10) and head["weights"].shape == (10, 32)
    target = sorted(small_target.rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    assert len(target) == 60
    # the texts were the run's prompts (3 per category, tiny config): each weight their normalised mean
    from aa_core.zero_shot import text_weights

    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    by_category = {str(c): [r["text"] for r in rows if r["label"] == str(c)] for c in range(10)}
    assert all(len(v) == 3 for v in by_category.values())
    torch.testing.assert_close(head["weights"], text_weights(vlm_of(clip_model), by_category, batch_size=64))
    assert read_json(out / "stages.json")["zero_shot"]["fingerprint"]
    # aa compare and aa report show the row
    import csv

    aa("compare", out, "--out", tmp_path, check=0)
    (row,) = csv.DictReader(open(tmp_path / "compare.csv"))
    assert row["zero_shot"] == f"{metrics['target_accuracy']['zero_shot']:.4f} ± 0.0000" and "dev zero_shot" in row
    aa("report", out, check=0)
    assert f"<tr><td>zero_shot</td><td>{metrics['target_accuracy']['zero_shot']}</td>" in (out / "report.html").read_text()

    stamp = (out / "zero_shot.safetensors").stat().st_mtime_ns
    again = aa("run", *args, "--ssl", "mixmatch", check=0)
    assert stage_lines(again.stderr)["adapt"] == "reused" and (out / "zero_shot.safetensors").stat().st_mtime_ns == stamp
    assert read_json(out / "metrics.json")["target_accuracy"]["zero_shot"] == metrics["target_accuracy"]["zero_shot"]

    # another template: the zero-shot row again, then the evaluation; no training
    third = aa("run", *args, "--ssl", "mixmatch", "--set", "vlm.template=a picture of the number {category}", check=0)
    lines = stage_lines(third.stderr)
    assert lines["adapt"] == lines["refine"] == "reused" and lines["evaluate"] == "done"
    assert (out / "zero_shot.safetensors").stat().st_mtime_ns != stamp


def test_without_a_vlm_the_tables_have_no_zero_shot_row(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--ssl", "none", check=0)
    assert "zero_shot" not in read_json(out / "metrics.json")["target_accuracy"] and "zero_shot" not in proc.stdout
    assert not (out / "zero_shot.safetensors").exists()


def test_a_vlm_that_cannot_load_is_one_line_before_any_training(tmp_path, tiny_config, small_target, clip_model):
    from tiny_models import tiny_vit_classifier

    out = tmp_path / "run"
    base = ("--config", tiny_config, "--target", small_target, "--out", out, "--vlm", "clip")
    missing = aa("run", *base, "--set", f"vlm.model={tmp_path / 'nothing'}", check=1)
    assert missing.stderr.strip().splitlines()[-1].startswith(f"error: cannot load vlm.model {tmp_path / 'nothing'}: ")
    assert "Traceback" not in missing.stderr and not (out / "source_only.safetensors").exists()

    other = tiny_vit_classifier(tmp_path / "vit", [str(i) for i in range(10)])
    wrong = aa("run", *base, "--set", f"vlm.model={other}", check=1)
    assert wrong.stderr.strip().splitlines()[-1] == (
        f"error: vlm.model {other} is not a zero-shot image classifier (ViTConfig); give a CLIP, SigLIP, ALIGN or similar "
        "checkpoint (transformers' AutoModelForZeroShotImageClassification)"
    )

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in clip_model.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    refused = aa("run", *base, "--set", f"vlm.model={pickled}", check=1)
    assert "holds pickled weights (.bin) only" in refused.stderr and "vlm.allow_pickle=true" in refused.stderr

    typo = aa("run", *base, "--set", f"vlm.model={clip_model}", "--set", "vlm.templat=x {category}", check=2)
    assert "error: invalid config: vlm.templat: unknown key (got 'x {category}'); did you mean vlm.template?" in typo.stderr


def test_the_split_ranks_the_teachers_probabilities(tmp_path, tiny_config, small_target, clip_model):
    """refine.teacher=vlm: the split's classes and scores are the zero-shot row's; ensemble: the mean
    of the adapted model's and the row's, view by view (by hand, from the run's own files)."""
    import csv

    from safetensors.torch import load_file

    from aa_core.runs import Run, load_config, recorded_config
    from aa_core.stages.refine import teacher_probabilities
    from aa_core.trained import trained_model

    out = tmp_path / "run"
    args = ("--config", tiny_config, "--target", small_target, "--out", out, "--vlm", "clip", "--set", f"vlm.model={clip_model}")
    aa("run", *args, "--set", "refine.teacher=vlm", check=0)
    q = load_file(out / "zero_shot.safetensors")["logits"].softmax(dim=1)
    with open(out / "split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["pseudo_label"] for row in rows] == [str(k) for k in q.argmax(dim=1).tolist()]
    assert [float(row["score"]) for row in rows] == pytest.approx(q.max(dim=1).values.tolist(), abs=1e-4)
    assert read_json(out / "metrics.json")["split"]["teacher"] == "vlm"

    def probabilities(teacher):
        run = Run(load_config(base=recorded_config(out), sets=[f"refine.teacher={teacher}", "refine.views=2"]), out)
        ctx = run.ctx
        torch.manual_seed(0)  # the weak views' draws, the same for both teachers
        return teacher_probabilities(ctx, trained_model(ctx, "adapt").eval(), ctx.prepared(ctx.target.paths))

    p_plain, p_views = probabilities("adapted")
    e_plain, e_views = probabilities("ensemble")
    assert len(p_views) == len(e_views) == 2
    torch.testing.assert_close(e_plain, (p_plain + q) / 2)
    for p, e in zip(p_views, e_views):
        torch.testing.assert_close(e, (p + q) / 2)
    assert not torch.allclose(e_plain, p_plain)


def test_a_vlm_teacher_without_a_vlm_is_one_line(tmp_path, tiny_config, small_target):
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, "--set", "refine.teacher=ensemble", check=1)
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: refine.teacher=ensemble needs a vision-language model; add --vlm clip --set vlm.model=... or set refine.teacher=adapted"
    )
    assert not (tmp_path / "run" / "prompts.jsonl").exists()


def test_the_vlm_as_the_starting_network_is_the_zero_shot_classifier_before_any_step(tmp_path, tiny_config, small_target, clip_model):
    """model.backbone=vlm, source_only.steps=0: the source-only model is the tower with the zero-shot
    head; on the processor's pixels its logits are the zero-shot row's (to 1e-5). DANN and FixMatch
    then train it: the tower's weights move."""
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    from aa_core.runs import Run

    out = tmp_path / "run"
    vlm = ("--vlm", "clip", "--set", f"vlm.model={clip_model}", "--set", "model.backbone=vlm")
    aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *vlm, "--set", "source_only.steps=0", check=0)
    run = Run.open(out)
    assert run.config.data.image_size == 32 and run.config.data.channels == 3  # the processor's
    start = run.model("source_only")
    paths = [str(p) for p in run.target.paths]
    pixels = AutoProcessor.from_pretrained(clip_model)(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")
    with torch.no_grad():
        logits = start(pixels["pixel_values"])
    torch.testing.assert_close(logits, load_file(out / "zero_shot.safetensors")["logits"], atol=1e-5, rtol=1e-5)

    adapted, refined = run.model("adapt"), run.model("refine")
    tower = {k: v for k, v in start.state_dict().items() if k.startswith("backbone.")}
    assert tower and any(not torch.equal(v, adapted.state_dict()[k]) for k, v in tower.items())  # DANN trained the tower
    assert any(not torch.equal(v, refined.state_dict()[k]) for k, v in adapted.state_dict().items() if k.startswith("backbone."))
    metrics = read_json(out / "metrics.json")
    assert set(metrics["target_accuracy"]) == {"zero_shot", "source_only", "adapt", "refine"}


def test_the_vlm_backbone_needs_a_vlm_and_an_algorithm_that_takes_it(tmp_path, tiny_config, small_target, clip_model):
    out = tmp_path / "run"
    base = ("--config", tiny_config, "--target", small_target, "--out", out, "--set", "model.backbone=vlm")
    alone = aa("run", *base, check=1)
    assert alone.stderr.strip().splitlines()[-1] == (
        "error: model.backbone=vlm trains a vision-language model's image tower; add --vlm clip --set vlm.model=..."
    )
    cdtrans = aa("run", *base, "--vlm", "clip", "--set", f"vlm.model={clip_model}", "--uda", "cdtrans", check=1)
    assert cdtrans.stderr.strip().splitlines()[-1].startswith("error: uda 'cdtrans' needs a timm VisionTransformer backbone")


def test_refine_keep_zero_shot_makes_the_row_the_final_model_that_predict_uses(tmp_path, tiny_config, small_target, clip_model):
    """refine.keep=zero_shot: predictions.csv is the zero-shot row's; `aa predict` predicts with the
    VLM (its own input format) as the run did; `aa export` says in one line that it cannot."""
    import csv

    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = ("--config", tiny_config, "--target", small_target, "--out", out, "--vlm", "clip", "--set", f"vlm.model={clip_model}")
    aa("run", *args, "--set", "refine.keep=zero_shot", check=0)
    assert read_json(out / "metrics.json")["final"] == {"model": "zero_shot", "runner_up": "refine", "rule": "refine.keep",
                                                       "reason": "refine.keep is zero_shot"}  # fmt: skip
    q = load_file(out / "zero_shot.safetensors")["logits"].softmax(dim=1)
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["predicted"] for row in rows] == [str(k) for k in q.argmax(dim=1).tolist()]
    aa("predict", out, small_target, "--out", tmp_path / "again.csv", check=0)
    with open(tmp_path / "again.csv", newline="") as f:
        again = {Path(row["image"]).relative_to(small_target).as_posix(): row for row in csv.DictReader(f)}
    # the run's resize (area/bilinear) is not the processor's (bicubic): confidences agree to a little
    agree = sum(again[row["image"]]["predicted"] == row["predicted"] for row in rows)
    assert agree >= 0.9 * len(rows)
    assert max(abs(float(again[row["image"]]["confidence"]) - float(row["confidence"])) for row in rows) < 0.02
    export = aa("export", out, tmp_path / "exported", check=1)
    assert export.stderr.strip().splitlines()[-1].startswith("error: aa export writes timm networks, and the final model of")
    missing = aa("run", "--config", tiny_config, "--target", small_target, "--out", tmp_path / "no-vlm",
                 "--set", "refine.keep=zero_shot", check=1)  # fmt: skip
    assert "refine.keep=zero_shot keeps a vision-language model's zero-shot row" in missing.stderr
