"""glide (aa-glide): GLIDE's base model with classifier-free guidance and its upsampler, on a tiny
model saved as GLIDE's checkpoints are and loaded through the same torch.load path."""

import json

import numpy as np
from conftest import aa, assert_same_image, built, stage_lines
from PIL import Image

GLIDE = ["--generator", "glide", "--set", "generator.steps=4", "--set", "generator.upsample_steps=2", "--set", "generator.batch_size=4",
         "--set", "generator.images_per_class=2"]  # fmt: skip


def generator(model, **options):
    from aa_glide.glide import GlideGenerator

    return built(GlideGenerator, model, **options)


def test_aa_run_with_glide_end_to_end_and_each_image_regenerates_from_its_row(tmp_path, tiny_config, small_target, glide_model):
    out = tmp_path / "run"
    proc = aa("run", "--config", tiny_config, "--target", small_target, "--out", out, *GLIDE,
              "--set", f"generator.model={glide_model}", check=0)  # fmt: skip
    assert set(stage_lines(proc.stderr).values()) == {"done"}
    rows = [json.loads(line) for line in (out / "source" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and {r["generator"] for r in rows} == {"glide"}
    again = generator(glide_model, steps="4", upsample_steps="2")
    for row in rows[::9]:  # alone: the same picture as in its batch
        image = again.generate([row["prompt"]], [row["seed"]])[0]
        kept = Image.open(out / "source" / row["file_name"])
        assert kept.size == (256, 256)
        assert_same_image(image, kept)


def test_guidance_changes_the_image_and_the_base_model_alone_gives_64_pixels(glide_model):
    plain = generator(glide_model, steps="4", upsample=False, guidance_scale=0.0)
    guided = generator(glide_model, steps="4", upsample=False, guidance_scale=3.0)
    a, b = plain.generate(["a red bike"], [3])[0], guided.generate(["a red bike"], [3])[0]
    assert a.size == (64, 64) and not np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(b), np.asarray(guided.generate(["a red bike"], [3])[0]))  # a function of prompt and seed


def test_glide_without_its_package_says_how_to_install_it(tmp_path, tiny_config, glide_model):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "glide_text2im.py").write_text("raise ImportError(\"No module named 'glide_text2im'\")\n")
    args = ["run", "--config", tiny_config, "--out", tmp_path / "run", "--until", "generate", *GLIDE]
    proc = aa(*args, "--set", f"generator.model={glide_model}", env={"PYTHONPATH": str(hide)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: generator 'glide' needs the glide-text2im package, which is not on PyPI; "
        'install it with: pip install "glide-text2im @ git+https://github.com/openai/glide-text2im"'
    )


def test_a_folder_without_checkpoints_or_with_wrong_options_is_one_line(tmp_path, tiny_config, glide_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = aa("run", "--config", tiny_config, "--out", tmp_path / "a", "--until", "generate", *GLIDE, "--set", f"generator.model={empty}")
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(f"error: generator.model {empty} holds no base.pt")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "base.pt").write_bytes((glide_model / "base.pt").read_bytes())  # without the options that built it
    proc = aa("run", "--config", tiny_config, "--out", tmp_path / "b", "--until", "generate", *GLIDE, "--set", f"generator.model={wrong}",
              "--set", "generator.upsample=false")  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: base.pt does not fit GLIDE's base model (")
