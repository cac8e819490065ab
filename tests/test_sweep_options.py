"""Sweeping implementations together with their options: a grid key that is a section takes
implementations and their options, and each member gets its own and no other's."""

from __future__ import annotations

import yaml
from conftest import TINY, aa, read_json


def test_a_grid_swaps_prompters_each_with_its_own_options(tmp_path):
    table = tmp_path / "prompts.csv"
    table.write_text("0,a 0 drawn by hand\n1,a 1 in ink\n")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "uda": {"name": "none"}, "ssl": {"name": "none"}}))
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"prompts": [{"name": "template"}, {"name": "csv", "file": str(table)}]}))
    root = tmp_path / "sweep"
    proc = aa("sweep", root, "--config", config, "--grid-file", grid, fakes=["csvprompts"], check=0)
    assert "2 of 2 runs done" in proc.stdout
    csv_run, template_run = root / "prompts=csv" / "seed0", root / "prompts=template" / "seed0"
    assert yaml.safe_load((csv_run / "config.yaml").read_text())["prompts"]["file"] == str(table)
    assert "file" not in yaml.safe_load((template_run / "config.yaml").read_text())["prompts"]
    texts = [line for line in (csv_run / "prompts.jsonl").read_text().splitlines() if '"label": "0"' in line]
    assert texts and all("a 0 drawn by hand" in line for line in texts)
    compare = aa("compare", root, fakes=["csvprompts"], check=0).stdout
    assert "| prompts.name=csv |" in compare and "| prompts.name=template |" in compare
    assert read_json(csv_run / "metrics.json")["target_accuracy"]["adapt"] >= 0


def test_the_same_grid_on_the_command_line_and_two_of_one_name_by_their_options(tmp_path):
    from aa_results.sweep import Sweep

    grid = {"generator": [{"name": "glyph"}, {"name": "stable-diffusion", "steps": 1}, {"name": "stable-diffusion", "steps": 4}]}
    names = [m.name for m in Sweep(root=tmp_path, grid=grid).members()]
    assert names == ["generator=glyph", "generator=stable-diffusion,steps=1", "generator=stable-diffusion,steps=4"]
    assert Sweep(root=tmp_path, grid=grid).members()[1].sets == ['generator={"name": "stable-diffusion", "steps": 1}']


def test_a_base_option_of_one_swapped_implementation_is_one_line(tmp_path):
    proc = aa("sweep", tmp_path / "s", "--set", "prompts.file=x.csv", "--grid", "prompts.name=template,csv", fakes=["csvprompts"])
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: --set prompts.file is an option of one prompts implementation, and the grid swaps prompts.name; give each "
        "implementation its options in the grid: --grid 'prompts=[{name: a}, {name: b, file: ...}]'"
    )
    proc = aa("sweep", tmp_path / "s", "--grid", "uda=[dann, mcd]")
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: grid key 'uda' must name a setting (section.key)")


def test_a_command_line_grid_of_implementations_with_options_runs(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "ssl": {"name": "none"}, "train": {**TINY["train"], "steps": 4}}))
    root = tmp_path / "sweep"
    proc = aa("sweep", root, "--config", config, "--grid", "uda=[{name: dann, trade_off: 0.5}, {name: symnets}]", check=0)
    assert "2 of 2 runs done" in proc.stdout
    assert yaml.safe_load((root / "uda=dann" / "seed0" / "config.yaml").read_text())["uda"]["trade_off"] == 0.5
    assert yaml.safe_load((root / "uda=symnets" / "seed0" / "config.yaml").read_text())["uda"]["name"] == "symnets"
