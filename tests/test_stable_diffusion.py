"""stable-diffusion and the CLIP filter (aa-diffusers), on tiny pipelines loaded through the real
``AutoPipelineForText2Image.from_pretrained`` and ``CLIPModel.from_pretrained`` paths."""

import json
import logging
import shlex
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY, aa, assert_same_image, built, read_json, stage_lines
from PIL import Image

from aa_core.api import AAError

SD = ["--generator", "stable-diffusion", "--set", "generator.steps=2", "--set", "generator.batch_size=4"]
FEW = ["--set", "generator.images_per_class=2"]  # 20 images: each aa run stays a few seconds past its imports


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def generator(model, **options):
    from aa_diffusers.stable_diffusion import StableDiffusionGenerator

    return built(StableDiffusionGenerator, model, **options)


def bare(model, prompts, seeds, **arguments):
    """The images a user's own diffusers loop makes: the pipeline's defaults for all not given."""
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    if "negative_prompt" in arguments:  # one per prompt, as diffusers wants with a list of prompts
        arguments["negative_prompt"] = [arguments["negative_prompt"]] * len(prompts)
    return pipe(list(prompts), generator=[torch.Generator().manual_seed(s) for s in seeds], **arguments)


DOCS = Path(__file__).parent.parent / "docs" / "generating.md"
FAMILY = {"stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15", "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
          "stabilityai/stable-diffusion-3.5-medium": "sd3", "black-forest-labs/FLUX.1-dev": "flux"}  # fmt: skip
CALLED = {"negative_prompt": "negative_prompt", "guidance_scale": "guidance_scale"}  # options of the examples -> __call__


def family_examples() -> dict[str, list[str]]:
    """The ``aa run`` commands of docs/generating.md's "One example per family", by family, less ``aa run``."""
    section = DOCS.read_text().split("## One example per family")[1].split("\n## ")[0]
    commands = [shlex.split(line)[2:] for line in section.splitlines() if line.startswith("aa run ")]
    return {FAMILY[next(a.split("=", 1)[1] for a in c if a.startswith("generator.model="))]: c for c in commands}


def documented(family: str, model, out) -> list[str]:
    """The family's documented command with ``model`` for its hub id and ``out`` for its run folder."""
    args = [f"generator.model={model}" if a.startswith("generator.model=") else a for a in family_examples()[family]]
    return [str(out) if a.startswith("runs/") else a for a in args]


def called(family: str) -> dict:
    """The ``__call__`` arguments the family's documented command sets (besides steps and size)."""
    sets = dict(a.removeprefix("generator.").split("=", 1) for a in family_examples()[family] if a.startswith("generator."))
    return {CALLED[k]: yaml.safe_load(v) for k, v in sets.items() if k in CALLED}


# --- the module's aa runs, side by side ---------------------------------------------------------

RUNS = []  # (test, key, the fixtures it takes, how): every aa run of this module


def aa_run(test: str, key: str = "run", *fixtures: str):
    """Register ``how(out, config, **fixtures)`` as an ``aa`` run of ``test``, started by ``runs``."""

    def register(how):
        RUNS.append((test, key, fixtures, how))
        return how

    return register


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict:
    """The ``aa`` runs of the selected tests, all started when the first is needed and run two at a
    time (each process spends seconds on imports, on one core) while this process goes on with the
    other tests; a test waits for its own: {(test, key): Future of what ``how`` returned}."""
    selected = {item.originalname for item in request.session.items if item.path == request.path}
    root = tmp_path_factory.mktemp("runs")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    pool = ThreadPoolExecutor(2)
    futures = {}
    for test, key, names, how in RUNS:
        if test in selected:
            values = {name: request.getfixturevalue(name) for name in names}  # here: fixtures are not thread-safe
            futures[test, key] = pool.submit(how, root / f"{len(futures):02d}", config, **values)
    yield futures
    pool.shutdown(cancel_futures=True)


E2E = "test_aa_run_end_to_end_and_every_image_regenerates_exactly_from_its_row"


@aa_run(E2E, "run", "small_target", "stable_diffusion")
def documented_sd15_run(out, config, small_target, stable_diffusion):
    # the documented SD 1.5 command, on the tiny pipeline, 2 steps, 2 images per class
    return aa("run", "--config", config, "--target", small_target, *documented("sd15", stable_diffusion, out), *SD, *FEW), out


SWAP = "test_swapping_the_generator_leaks_no_image_and_turning_on_speed_switches_keeps_every_image"


@aa_run(SWAP, "run", "stable_diffusion")
def glyph_then_sd_then_speed_switches(out, config, stable_diffusion):
    """glyph -> stable-diffusion -> stable-diffusion with every speed switch and one more image per category."""
    glyph = aa("run", "--config", config, "--out", out, "--until", "generate", *FEW)
    made = {r["file_name"] for r in rows(out / "source" / "metadata.jsonl")}
    model = ["--set", f"generator.model={stable_diffusion}"]
    swapped = aa("run", "--config", config, "--out", out, "--until", "generate", *SD, *FEW, *model)
    kept = rows(out / "source" / "metadata.jsonl")
    files = {str(p.relative_to(out / "source")) for p in (out / "source").rglob("*.png")}
    before = {p: p.stat().st_mtime_ns for p in (out / "source").rglob("*.png")}
    on = ("attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload", "compile", "allow_pickle")
    switches = [x for s in on for x in ("--set", f"generator.{s}=true")]
    more = ["--set", "generator.images_per_class=3", "--set", "generator.batch_size=3"]
    faster = aa("run", "--config", config, "--out", out, "--until", "generate", *SD, *model, *more, *switches)
    after = {p: p.stat().st_mtime_ns for p in (out / "source").rglob("*.png")}
    return {"procs": (glyph, swapped, faster), "glyph": made, "kept": kept, "files": files, "before": before, "after": after}


BLANK = "test_blank_images_from_the_safety_checker_are_made_again_and_counted"


@aa_run(BLANK, "run", "stable_diffusion_with_checker")
def checked_run(out, config, stable_diffusion_with_checker):
    model = f"generator.model={stable_diffusion_with_checker}"
    return aa("run", "--config", config, "--out", out, "--until", "generate", *SD, *FEW, "--set", model), out


def test_aa_run_end_to_end_and_every_image_regenerates_exactly_from_its_row(runs, stable_diffusion):
    proc, out = runs[E2E, "run"].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(stage_lines(proc.stderr).values()) == {"done"}
    assert set(read_json(out / "metrics.json")["target_accuracy"]) == {"source_only", "adapt", "refine"}
    kept = rows(out / "source" / "metadata.jsonl")
    assert len(kept) == 20 and {r["generator"] for r in kept} == {"stable-diffusion"}
    again = generator(stable_diffusion, steps=2, **called("sd15"))
    for row in kept[1::6]:  # alone, in a batch of one: the same picture as in its batch of four
        image = again.generate([row["prompt"]], [row["seed"]])[0]
        assert_same_image(image, Image.open(out / "source" / row["file_name"]))
    row = kept[3]  # and the picture a bare diffusers loop makes with the same arguments
    own = bare(stable_diffusion, [row["prompt"]], [row["seed"]], num_inference_steps=2, **called("sd15"))
    assert_same_image(own.images[0], Image.open(out / "source" / row["file_name"]))
    recorded = yaml.safe_load((out / "config.yaml").read_text())["plugins"]["generator"]
    assert recorded["name"] == "stable-diffusion" and recorded["distribution"] == "aa-diffusers"


def test_blank_images_from_the_safety_checker_are_made_again_and_counted(runs):
    proc, out = runs[BLANK, "run"].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept, dropped = rows(out / "source" / "metadata.jsonl"), rows(out / "dropped" / "dropped.jsonl")
    for row in kept:
        assert max(Image.open(out / "source" / row["file_name"]).convert("L").getextrema()) > 0  # no black square kept
    assert dropped and all(r["reason"] == "blank" and r["file_name"] == "" for r in dropped)
    assert any(r["blank"] > 0 for r in kept)
    assert sum(r["blank"] for r in kept) <= len(dropped)  # the rest are slots given up after 3 retries
    assert read_json(out / "generation.json")["blank"] == len(dropped)


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


BAD_SETTINGS = "test_bad_generator_and_filter_settings_are_one_line"
BAD = {
    "generator.model=/nowhere/pipe": "error: cannot load the diffusers pipeline '/nowhere/pipe': ",
    "generator.scheduler=NoSuchScheduler": "error: generator.scheduler 'NoSuchScheduler' is not a diffusers scheduler",
    "generator.steps=0": "error: invalid config: generator.steps: Input should be greater than or equal to 1",
    "filters.clip.model=/no/clip": "error: cannot load the CLIP model '/no/clip' of filters.clip: ",
}
for _setting in BAD:

    @aa_run(BAD_SETTINGS, _setting, "stable_diffusion")
    def bad_run(out, config, stable_diffusion, setting=_setting):
        generator = [*SD, "--set", f"generator.model={stable_diffusion}"] if setting.startswith("generator.") else []
        return aa("run", "--config", config, "--out", out, "--until", "generate", *generator, "--set", setting)


def test_bad_generator_and_filter_settings_are_one_line(runs):
    for setting, message in BAD.items():
        proc = runs[BAD_SETTINGS, setting].result()
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, setting
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == errors[0]


def test_swapping_the_generator_leaks_no_image_and_turning_on_speed_switches_keeps_every_image(runs):
    made = runs[SWAP, "run"].result()
    for proc in made["procs"]:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert stage_lines(made["procs"][1].stderr) == {"prompts": "reused", "generate": "done"}
    kept, files = made["kept"], made["files"]
    assert len(kept) == 20 and files == {r["file_name"] for r in kept} and not files & made["glyph"]
    assert {r["generator"] for r in kept} == {"stable-diffusion"}
    before, after = made["before"], made["after"]  # every speed switch on, and one more image per category
    assert len(after) == len(before) + 10
    assert {p: after[p] for p in before} == before  # every earlier image is still there, untouched


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


CLIP_RUN = "test_clip_filter_in_a_run_lists_what_it_drops_and_keeps_what_it_passes"


@aa_run(CLIP_RUN, "run", "clip_model")
def clip_filtered_run(out, config, clip_model):
    sets = ["--set", f"filters.clip.model={clip_model}", "--set", "filters.clip.top_k=5"]
    return aa("run", "--config", config, "--out", out, "--until", "generate", *sets), out


def test_clip_filter_in_a_run_lists_what_it_drops_and_keeps_what_it_passes(runs, clip_model):
    proc, out = runs[CLIP_RUN, "run"].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept, dropped = rows(out / "source" / "metadata.jsonl"), rows(out / "dropped" / "dropped.jsonl")
    assert dropped and all(r["reason"].startswith("clip: looks like '") for r in dropped)
    judge = clip_filter(clip_model, [str(d) for d in range(10)], top_k=5)
    judge.texts = [f"a handwritten digit of a {d}" for d in range(10)]
    images = [Image.open(out / "source" / r["file_name"]) for r in kept]
    assert judge.reasons(images, [r["prompt"] for r in kept], [r["label"] for r in kept]) == [None] * len(kept)
    images = [Image.open(out / "dropped" / r["file_name"]) for r in dropped]
    assert None not in judge.reasons(images, [r["prompt"] for r in dropped], [r["label"] for r in dropped])


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
    assert switches == {"attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload", "compile", "allow_pickle"}
    for switch in sorted(switches):
        assert key(f"generator.{switch}=true") == base, switch
    assert key("generator.batch_size=3") == base
    changed = {"revision": "main", "variant": "fp16", "dtype": "float16", "scheduler": "EulerDiscreteScheduler", "steps": 7,
               "guidance_scale": 2.0, "negative_prompt": "blur", "height": 64, "width": 96, "safety_checker": False}  # fmt: skip
    assert set(changed) | switches == set(StableDiffusionOptions.model_fields)  # every option is one or the other
    for option, value in changed.items():
        assert key(f"generator.{option}={value}") != base, option
    assert key("generator.model=other/pipe") != base


# --- the pipeline matrix: SD 1.5, SDXL, SD3, Flux (and an LCM, which takes no negative prompt) ----


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    """Every family of the matrix as a saved pipeline folder, built once for this module."""
    from tiny_pipelines import pipeline_matrix

    return pipeline_matrix(tmp_path_factory.mktemp("matrix"))


@pytest.fixture(scope="module")
def lcm(tmp_path_factory):
    from tiny_pipelines import tiny_lcm

    return tiny_lcm(tmp_path_factory.mktemp("lcm") / "pipe")


SMALLER = ["--until", "generate", "--set", "generator.images_per_class=1", "--set", "generator.batch_size=5",
           "--set", "generator.steps=2", "--set", "generator.height=64", "--set", "generator.width=64"]  # fmt: skip


FAMILIES = "test_every_family_runs_through_aa_run_as_its_own_diffusers_loop_would"
for _family in ("sdxl", "sd3", "flux"):  # SD 1.5's example: E2E

    @aa_run(FAMILIES, _family, "matrix")
    def family_run(out, config, matrix, family=_family):  # the documented command on the family's tiny pipeline, smaller
        return aa("run", "--config", config, *documented(family, matrix[family], out), *SMALLER), out


def test_every_family_runs_through_aa_run_as_its_own_diffusers_loop_would(runs, matrix):
    assert set(family_examples()) == set(matrix)
    for family in ("sdxl", "sd3", "flux"):
        proc, out = runs[FAMILIES, family].result()
        assert proc.returncode == 0 and "takes no" not in proc.stderr, (family, proc.stderr[-2000:])
        kept = rows(out / "source" / "metadata.jsonl")
        assert len(kept) == 10 and all(r["attempt"] == 0 for r in kept), family
        row = kept[7]
        # steps 2; guidance, where the example leaves it, the pipeline's own (SDXL 5, Flux 3.5)
        own = bare(matrix[family], [row["prompt"]], [row["seed"]], num_inference_steps=2, height=64, width=64, **called(family))
        made = Image.open(out / "source" / row["file_name"])
        assert made.size == (64, 64) and made.mode == "RGB", family
        assert_same_image(made, own.images[0])


def test_a_pipeline_without_negative_prompt_warns_once_and_runs_with_its_own_steps_and_guidance(lcm, caplog):
    with caplog.at_level(logging.WARNING, logger="aa"):
        made = generator(lcm, negative_prompt="blurry")
        images = made.generate(["a 1", "a 2"], [3, 4]) + made.generate(["a 3"], [5])
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == ["LatentConsistencyModelPipeline takes no negative_prompt: generator.negative_prompt ignored"]
    own = bare(lcm, ["a 1", "a 2", "a 3"], [3, 4, 5]).images  # LCM's own 4 steps, guidance 8.5
    for image, expected in zip(images, own):
        assert_same_image(image, expected)
    fixed = bare(lcm, ["a 1"], [3], num_inference_steps=50, guidance_scale=7.5).images[0]  # what every call passed before
    assert np.abs(np.asarray(fixed, int) - np.asarray(images[0], int)).mean() > 5


def test_pixels_that_overflow_the_dtype_are_an_error_naming_the_dtype_to_use_not_a_blank(tmp_path, lcm):
    from tiny_pipelines import overflowing_float16

    from aa_diffusers.precision import check_finite

    model = overflowing_float16(lcm, tmp_path / "pipe")
    with pytest.raises(AAError) as overflowed:
        generator(model, steps=2, dtype="float16").generate(["a 1"], [0])
    assert str(overflowed.value) == (
        "the pipeline made non-finite pixels (NaN) in float16: float16 overflows in this model; set generator.dtype=bfloat16 (or float32)"
    )
    for dtype in ("bfloat16", "float32"):  # wider ranges: a picture
        image = generator(model, steps=2, dtype=dtype).generate(["a 1"], [0])[0]
        assert np.asarray(image).std() > 10, dtype
    with pytest.raises(AAError, match=r"in bfloat16: bfloat16 overflows in this model; set generator\.dtype=float32$"):
        check_finite(np.array([0.5, np.nan]), torch.bfloat16)
    with pytest.raises(AAError, match=r"in float32: the model itself is broken in float32; check generator\.model"):
        check_finite(np.array([np.inf]), torch.float32)


def test_auto_precision_is_float32_on_the_cpu_and_half_on_other_accelerators():
    from aa_core.api import auto_dtype as torch_dtype

    assert torch_dtype("auto", torch.device("cpu")) == torch.float32
    assert torch_dtype("auto", torch.device("mps")) == torch.float16
    assert torch_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    # CUDA: bfloat16 where torch.cuda.is_bf16_supported(), else float16 (checked on a GPU machine, not here)


def test_the_pipelines_own_safety_verdicts_decide_what_is_withheld(stable_diffusion_with_checker):
    prompts, seeds = [f"a {i}" for i in range(8)], list(range(8))
    own = bare(stable_diffusion_with_checker, prompts, seeds, num_inference_steps=3)
    flags = own.nsfw_content_detected
    assert 0 < sum(flags) < 8
    images = generator(stable_diffusion_with_checker, steps=3).generate(prompts, seeds)
    assert [image is None for image in images] == flags
    for image, expected, flagged in zip(images, own.images, flags):
        if not flagged:
            assert_same_image(image, expected)
    # switched off: every image, the flagged ones as the pipeline makes them before its checker blacks them out
    unchecked = generator(stable_diffusion_with_checker, steps=3, safety_checker=False)
    assert unchecked.pipe.safety_checker is None
    every = unchecked.generate(prompts, seeds)
    for image, expected, flagged in zip(every, own.images, flags):
        assert image is not None and np.asarray(image).std() > 10
        if not flagged:
            assert_same_image(image, expected)
        else:
            assert not np.asarray(expected).any()  # what the checker gave in its place: black


def test_a_black_image_counts_as_withheld_only_where_the_pipeline_gives_no_verdict(tmp_path, stable_diffusion_with_checker):
    from tiny_pipelines import black_and_passed

    from aa_core.data.synthetic import Slot
    from aa_core.data.synthetic_source import Work
    from aa_core.stages.generate import render

    model = black_and_passed(stable_diffusion_with_checker, tmp_path / "pipe")
    work = [Work(Slot("0", 0, "a 0", 5)), Work(Slot("1", 0, "a 1", 6))]
    checked = generator(model, steps=2)  # its checker passes both: they are kept, black as they are
    kept = render(work, None, checked)
    assert all(image is not None and not np.asarray(image).any() for image in kept)
    unchecked = generator(model, steps=2, safety_checker=False)  # no verdict: a black image is taken for a withheld one
    assert unchecked.generate(["a 0", "a 1"], [5, 6]) == [None, None]
    assert render(work, None, unchecked) == [None, None]


def test_pickled_weights_are_refused_unless_allowed(tmp_path, lcm):
    from diffusers import AutoPipelineForText2Image

    AutoPipelineForText2Image.from_pretrained(lcm).save_pretrained(tmp_path / "pickled", safe_serialization=False)
    assert (tmp_path / "pickled" / "unet" / "diffusion_pytorch_model.bin").is_file()  # transformers 5 saves safetensors only
    with pytest.raises(AAError) as refused:
        generator(tmp_path / "pickled")
    message = str(refused.value)
    assert message.startswith(f"cannot load the diffusers pipeline '{tmp_path / 'pickled'}': ") and "\n" not in message
    assert message.endswith("if they are pickled (.bin) and you trust their source, set generator.allow_pickle=true")
    allowed = generator(tmp_path / "pickled", allow_pickle=True, steps=2).generate(["a 1"], [0])[0]
    assert_same_image(allowed, generator(lcm, steps=2).generate(["a 1"], [0])[0])
