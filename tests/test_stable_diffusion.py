"""stable-diffusion and the CLIP filter (aa-diffusers), on tiny pipelines loaded through the real
``AutoPipelineForText2Image.from_pretrained`` and ``CLIPModel.from_pretrained`` paths."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import aa, assert_same_image, built, read_json, stage_lines
from PIL import Image

SD = ["--generator", "stable-diffusion", "--set", "generator.steps=3", "--set", "generator.batch_size=4"]


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def generator(model, **options):
    from aa_diffusers.stable_diffusion import StableDiffusionGenerator

    return built(StableDiffusionGenerator, model, **options)


def test_aa_run_end_to_end_and_every_image_regenerates_exactly_from_its_row(tmp_path, tiny_config, small_target, stable_diffusion):
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *SD,
              "--set", f"generator.model={stable_diffusion}", check=0)  # fmt: skip
    assert set(stage_lines(proc.stderr).values()) == {"done"}
    assert set(read_json(out / "metrics.json")["target_accuracy"]) == {"source_only", "adapt", "refine"}
    kept = rows(out / "source" / "metadata.jsonl")
    assert len(kept) == 60 and {r["generator"] for r in kept} == {"stable-diffusion"}
    again = generator(stable_diffusion, steps=3)
    for row in kept[1::7]:  # alone, in a batch of one: the same picture as in its batch of four
        image = again.generate([row["prompt"]], [row["seed"]])[0]
        assert_same_image(image, Image.open(out / "source" / row["file_name"]))
    recorded = yaml.safe_load((out / "config.yaml").read_text())["plugins"]["generator"]
    assert recorded["name"] == "stable-diffusion" and recorded["distribution"] == "aa-diffusers"


def test_blank_images_from_the_safety_checker_are_made_again_and_counted(tmp_path, tiny_config, stable_diffusion_with_checker):
    out = tmp_path / "run"
    model = f"generator.model={stable_diffusion_with_checker}"
    aa("run", "--config", tiny_config, "--out", out, "--until", "generate", *SD, "--set", model, check=0)
    kept, dropped = rows(out / "source" / "metadata.jsonl"), rows(out / "dropped" / "dropped.jsonl")
    for row in kept:
        assert max(Image.open(out / "source" / row["file_name"]).convert("L").getextrema()) > 0  # no black square kept
    assert dropped and all(r["reason"] == "blank" and r["file_name"] == "" for r in dropped)
    assert any(r["blank"] > 0 for r in kept)
    assert sum(r["blank"] for r in kept) <= len(dropped)  # the rest are slots given up after 3 retries
    assert read_json(out / "generation.json")["blank"] == len(dropped)


def test_the_safety_checker_can_be_switched_off(tmp_path, tiny_config, stable_diffusion_with_checker):
    out = tmp_path / "run"
    model = f"generator.model={stable_diffusion_with_checker}"
    off = ["--set", "generator.safety_checker=false"]
    aa("run", "--config", tiny_config, "--out", out, "--until", "generate", *SD, "--set", model, *off, check=0)
    kept = rows(out / "source" / "metadata.jsonl")
    assert len(kept) == 60 and all(r["attempt"] == 0 for r in kept)


def test_a_scheduler_is_chosen_by_its_diffusers_class_name(stable_diffusion):
    euler = generator(stable_diffusion, steps=3, scheduler="EulerAncestralDiscreteScheduler")
    assert type(euler.pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    # an ancestral sampler draws fresh noise every step: from each image's own generator
    batch = euler.generate(["a 1", "a 2"], [5, 6])
    alone = euler.generate(["a 2"], [6])
    assert_same_image(batch[1], alone[0])
    assert not np.array_equal(np.asarray(batch[0]), np.asarray(euler.generate(["a 1"], [7])[0]))


def test_memory_savers_and_the_options_the_pipeline_takes(stable_diffusion):
    lean = generator(stable_diffusion, steps=2, attention_slicing=True, vae_slicing=True, vae_tiling=True,
                     negative_prompt="blurry", height=32, width=48, guidance_scale=3.0)  # fmt: skip
    assert lean.pipe.vae.use_slicing and lean.pipe.vae.use_tiling
    assert lean.generate(["a 3"], [1])[0].size == (48, 32)
    lean.close()
    assert lean.pipe is None


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["--set", "generator.model=/nowhere/pipe"], "error: cannot load the diffusers pipeline '/nowhere/pipe': "),
        (["--set", "generator.scheduler=NoSuchScheduler"], "error: generator.scheduler 'NoSuchScheduler' is not a diffusers scheduler"),
        (["--set", "generator.steps=0"], "error: invalid config: generator.steps: Input should be greater than or equal to 1"),
    ],
)
def test_bad_generator_settings_are_one_line(tmp_path, tiny_config, stable_diffusion, sets, message):
    args = ["run", "--config", tiny_config, "--out", tmp_path / "run", "--until", "generate", *SD]
    proc = aa(*args, "--set", f"generator.model={stable_diffusion}", *sets)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-2000:]


def test_swapping_the_generator_shares_the_prompts_and_leaks_no_image(tmp_path, tiny_config, stable_diffusion):
    out = tmp_path / "run"
    aa("run", "--config", tiny_config, "--out", out, "--until", "generate", check=0)
    glyph = {r["file_name"] for r in rows(out / "source" / "metadata.jsonl")}
    proc = aa("run", "--config", tiny_config, "--out", out, "--until", "generate", *SD, "--set", f"generator.model={stable_diffusion}",
              check=0)  # fmt: skip
    assert stage_lines(proc.stderr) == {"prompts": "reused", "generate": "done"}
    kept = rows(out / "source" / "metadata.jsonl")
    files = {str(p.relative_to(out / "source")) for p in (out / "source").rglob("*.png")}
    assert files == {r["file_name"] for r in kept} and not files & glyph
    assert {r["generator"] for r in kept} == {"stable-diffusion"}


# --- the CLIP filter --------------------------------------------------------------------------


def clip_filter(model, categories, **options):
    from aa_core.api import ImageFilterContext
    from aa_diffusers.clip_filter import CLIPFilter

    return CLIPFilter(CLIPFilter.Options(model=str(model), **options), ImageFilterContext(categories, "photo", torch.device("cpu")))


def test_clip_keeps_an_image_whose_category_is_among_its_top_k(clip_model):
    categories = ["cat", "dog", "car", "tree"]
    strict, loose = clip_filter(clip_model, categories), clip_filter(clip_model, categories, top_k=4)
    images = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 90, 180, 255)]
    p = strict.probabilities(images)
    assert p.shape == (4, 4) and torch.allclose(p.sum(dim=1), torch.ones(4))
    labels = [categories[int(row.argmax())] for row in p]
    assert strict.reasons(images, ["x"] * 4, labels) == [None] * 4  # each image's most likely category
    worst = [categories[int(row.argmin())] for row in p]
    said = strict.reasons(images, ["x"] * 4, worst)
    assert all(reason.startswith("looks like '") for reason in said)
    assert loose.reasons(images, ["x"] * 4, worst) == [None] * 4
    assert strict.texts == ["a photo of a cat", "a photo of a dog", "a photo of a car", "a photo of a tree"]


def test_clip_filter_in_a_run_lists_what_it_drops_and_keeps_what_it_passes(tmp_path, tiny_config, clip_model):
    out = tmp_path / "run"
    sets = ["--set", f"filters.clip.model={clip_model}", "--set", "filters.clip.top_k=5"]
    aa("run", "--config", tiny_config, "--out", out, "--until", "generate", *sets, check=0)
    kept, dropped = rows(out / "source" / "metadata.jsonl"), rows(out / "dropped" / "dropped.jsonl")
    assert dropped and all(r["reason"].startswith("clip: looks like '") for r in dropped)
    judge = clip_filter(clip_model, [str(d) for d in range(10)], top_k=5)
    judge.texts = [f"a handwritten digit of a {d}" for d in range(10)]
    images = [Image.open(out / "source" / r["file_name"]) for r in kept]
    assert judge.reasons(images, [r["prompt"] for r in kept], [r["label"] for r in kept]) == [None] * len(kept)
    images = [Image.open(out / "dropped" / r["file_name"]) for r in dropped]
    assert None not in judge.reasons(images, [r["prompt"] for r in dropped], [r["label"] for r in dropped])


def test_a_missing_clip_model_is_one_line(tmp_path, tiny_config):
    proc = aa("run", "--config", tiny_config, "--out", tmp_path / "run", "--until", "generate", "--set", "filters.clip.model=/no/clip")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot load the CLIP model '/no/clip' of filters.clip: ")


def test_an_image_key_holds_what_changes_pixels_and_not_the_speed_switches_or_the_patch_release(tmp_path):
    from aa_core.config import load_config
    from aa_core.context import StageContext
    from aa_core.fingerprints import image_maker, release
    from aa_core.run_folder import RunFolder
    from aa_diffusers.stable_diffusion import StableDiffusionGenerator, StableDiffusionOptions

    def key(*sets):
        config = load_config(sets=["generator.name=stable-diffusion", "generator.model=some/pipe", *sets])
        return image_maker(StageContext(config, RunFolder(tmp_path)))

    base = key()
    assert release("0.4.2") == release("0.4.7") == "0.4" and release("1.0.0rc1") == "1.0"
    assert base["version"].count(".") == 1  # the installed release, less its patch number
    switches = StableDiffusionGenerator.speed_options
    assert switches == {"attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload", "compile"}
    for switch in sorted(switches):
        assert key(f"generator.{switch}=true") == base, switch
    assert key("generator.batch_size=3") == base
    changed = {"revision": "main", "variant": "fp16", "dtype": "float16", "scheduler": "EulerDiscreteScheduler", "steps": 7,
               "guidance_scale": 2.0, "negative_prompt": "blur", "height": 64, "width": 96, "safety_checker": False}  # fmt: skip
    assert set(changed) | switches == set(StableDiffusionOptions.model_fields)  # every option is one or the other
    for option, value in changed.items():
        assert key(f"generator.{option}={value}") != base, option
    assert key("generator.model=other/pipe") != base


def test_turning_on_every_speed_switch_keeps_every_image(tmp_path, tiny_config, stable_diffusion):
    out = tmp_path / "run"
    model = ["--set", f"generator.model={stable_diffusion}"]
    aa("run", "--config", tiny_config, "--out", out, "--until", "generate", *SD, *model, check=0)
    before = {p: p.stat().st_mtime_ns for p in (out / "source").rglob("*.png")}
    switches = [f"generator.{s}=true" for s in ("attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload", "compile")]
    more = ["--set", "generator.images_per_class=7", "--set", "generator.batch_size=3"]  # a rerun that makes one more each
    proc = aa("run", "--config", tiny_config, "--out", out, "--until", "generate", *SD, *model, *more,
              *[x for s in switches for x in ("--set", s)], check=0)  # fmt: skip
    after = {p: p.stat().st_mtime_ns for p in (out / "source").rglob("*.png")}
    assert len(after) == len(before) + 10, proc.stderr[-2000:]
    assert {p: after[p] for p in before} == before  # every earlier image is still there, untouched
