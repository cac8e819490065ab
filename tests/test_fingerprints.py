"""What each stage depends on: every config field classified once, the implementations' resolved
options and declared ``inputs()`` hashed, a missing output run again."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import TINY, aa, stage_lines
from pydantic import Field

from aa_core.config import Config, TrainConfig, load_config
from aa_core.fingerprints import FIELDS, fingerprints, source_only_fingerprint, unclassified
from aa_core.pipeline import context

STAGES = ["prompts", "generate", "adapt", "refine", "evaluate"]


def test_every_config_field_is_classified():
    assert unclassified(Config) == []


def test_a_new_field_that_is_not_classified_is_found():
    class Knobbed(TrainConfig):
        new_knob: int = Field(1)

    class Wider(Config):
        train: Knobbed = Field(default_factory=Knobbed)
        extra_section: dict = Field(default_factory=dict)

    assert unclassified(Wider) == ["train.new_knob", "extra_section"]


def changed(tmp_path, *sets: str) -> list[str]:
    """The parts whose fingerprint ``--set``s change, against the default task's."""

    def prints(items) -> dict[str, str]:
        ctx = context(load_config(sets=list(items)), tmp_path)
        return {**fingerprints(ctx, STAGES), "source_only": source_only_fingerprint(ctx)}

    before, after = prints([]), prints(sets)
    return [part for part in before if before[part] != after[part]]


@pytest.mark.parametrize(
    "sets, parts",
    [
        (["generator.batch_size=3", "data.num_workers=2", "data.cache_mb=0", "train.checkpoint_every=7"], []),
        (["uda.trade_off=1.0", "ssl.threshold=0.95"], []),  # the defaults, now written out
        (["train.steps=7"], ["adapt", "refine", "evaluate"]),
        (["uda.trade_off=0.5"], ["adapt", "refine", "evaluate"]),
        (["ssl.threshold=0.5"], ["refine", "evaluate"]),
        (["refine.keep=adapt"], ["evaluate"]),
        (["data.dev_fraction=0.3"], ["evaluate"]),
        (["source_only.lr=0.1"], ["adapt", "refine", "evaluate", "source_only"]),
        (["prompts.per_class=7"], STAGES),
        (["generator.images_per_class=7"], STAGES[1:]),
    ],
)
def test_a_field_changes_the_stages_it_is_classified_to_and_no_other(tmp_path, sets, parts):
    assert changed(tmp_path, *sets) == parts


def test_the_categories_are_the_source_only_models_labels_with_a_real_source(tmp_path, small_target):
    def source_only(categories: str) -> str:
        config = load_config(sets=[f"data.source={small_target}", f"data.target={small_target}", f"task.categories={categories}"])
        return source_only_fingerprint(context(config, tmp_path))

    assert FIELDS["task.categories"] == ("prompts", "source_only", "zero_shot")
    assert source_only("[0,1,2,3,4,5,6,7,8,9]") != source_only("[1,0,2,3,4,5,6,7,8,9]")


def test_config_yaml_records_every_resolved_option_and_reads_back_the_same(tmp_path, tiny_config):
    run = tmp_path / "run"
    aa("run", "--out", run, "--config", tiny_config, "--until", "prompts", check=0)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["uda"] == {
        "name": "dann", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.001, "nesterov": True, "backbone_lr_mult": 0.1,
        "trade_off": 1.0, "hidden": 1024,
    }  # fmt: skip
    assert recorded["ssl"]["threshold"] == 0.95 and "template" in recorded["prompts"]
    proc = aa("prompts", run, check=0)  # the stage command reads config.yaml back: nothing changed
    assert stage_lines(proc.stderr) == {"prompts": "reused"}


CSV = ["csvprompts"]


def test_a_prompter_that_reads_a_file_declares_it_and_an_edit_makes_the_prompts_again(tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("0,a zero drawn by hand\n1,a one drawn by hand\n")
    run = ["run", "--out", tmp_path / "run", "--prompter", "csv", "--set", f"prompts.file={table}", "--set", "prompts.per_class=2"]
    run += ["--until", "prompts"]

    def prompts() -> list[str]:
        lines = (tmp_path / "run" / "prompts.jsonl").read_text().splitlines()
        return [json.loads(line)["text"] for line in lines if json.loads(line)["label"] == "0"]

    assert stage_lines(aa(*run, fakes=CSV, check=0).stderr) == {"prompts": "done"}
    assert prompts() == ["a zero drawn by hand"] * 2
    assert stage_lines(aa(*run, fakes=CSV, check=0).stderr) == {"prompts": "reused"}
    table.write_text("0,a zero drawn by hand\n0,a zero in ink\n")
    assert stage_lines(aa(*run, fakes=CSV, check=0).stderr) == {"prompts": "done"}
    assert prompts() == ["a zero drawn by hand", "a zero in ink"]
    (tmp_path / "run" / "prompts.jsonl").unlink()  # an output deleted by hand: the stage runs again
    proc = aa(*run, fakes=CSV, check=0)
    assert stage_lines(proc.stderr) == {"prompts": "done"} and "Traceback" not in proc.stderr
    assert prompts() == ["a zero drawn by hand", "a zero in ink"]


def test_an_options_model_that_allows_extras_still_refuses_a_typo(tmp_path):
    proc = aa("run", "--out", tmp_path, "--prompter", "loose", "--set", "prompts.fiel=oops", fakes=CSV)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: invalid config: prompts.fiel: unknown key (got 'oops'); did you mean prompts.file?"
    assert not (tmp_path / "config.yaml").exists()


def test_a_deleted_weights_file_trains_its_stage_again(tmp_path, tiny_config):
    config = {**TINY, "train": {**TINY["train"], "refine_steps": 2}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = ["run", "--out", tmp_path / "run", "--config", tmp_path / "tiny.yaml", "--ssl", "none"]
    aa(*run, check=0)
    (tmp_path / "run" / "adapt.safetensors").unlink()
    lines = stage_lines(aa(*run, check=0).stderr)
    assert lines == {"prompts": "reused", "generate": "reused", "adapt": "done", "evaluate": "done"}
    assert (tmp_path / "run" / "adapt.safetensors").is_file()
