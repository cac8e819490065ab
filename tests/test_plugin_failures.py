"""A plugin that goes wrong while training: one line naming it, the stage and the step; the
traceback in the run folder; the last checkpoint kept, so the fixed plugin resumes
(``tests/fake_dists/badalgos``: SSL algorithms that fail from step ``$AA_FAKE_FAIL_AT`` on)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import yaml
from conftest import TINY, aa

from aa_core.blame import NonFinite
from aa_core.run_folder import strict_json


def error_line(stderr: str) -> str:
    """The last ``error:`` line (a closed progress bar may share its line)."""
    return "error: " + stderr.rsplit("error: ", 1)[1].strip()


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """A tiny run folder adapted once, copied by each test; refine checkpoints every 2 steps."""
    root = tmp_path_factory.mktemp("failures")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "refine_steps": 8, "checkpoint_every": 2}}))
    aa("run", "--out", root / "run", "--config", config, "--until", "adapt", check=0)
    return root / "run", config


def copy(adapted, tmp_path):
    run, config = adapted
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", config


def test_a_nan_loss_stops_the_stage_naming_the_plugin_and_the_fixed_plugin_resumes(adapted, tmp_path):
    run, config = copy(adapted, tmp_path)
    proc = aa("run", "--out", run, "--config", config, "--ssl", "nanloss", fakes=["badalgos"])
    assert proc.returncode == 1
    assert error_line(proc.stderr) == (
        "error: ssl 'nanloss' (aa-badalgos 1.0) gave a non-finite loss (nan) at refine step 3; the checkpoint at step 2 is "
        f"kept: fix the plugin and rerun the same command (details in {run / 'error.log'})"
    )
    assert "Traceback" not in proc.stderr
    assert "NonFinite: loss = nan" in (run / "error.log").read_text()
    assert [p.name for p in (run / "checkpoints" / "refine").iterdir()] == ["step-00000002"]
    assert not (run / "metrics.json").exists()
    fixed = aa("run", "--out", run, "--config", config, "--ssl", "nanloss", fakes=["badalgos"], env={"AA_FAKE_FAIL_AT": "99"})
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert "resuming from the checkpoint at step 2" in fixed.stderr
    metrics = json.loads((run / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
    assert 0 <= metrics["target_accuracy"]["refine"] <= 1


def test_an_exception_in_a_training_step_is_one_line_and_its_traceback_a_file(adapted, tmp_path):
    run, config = copy(adapted, tmp_path)
    proc = aa("run", "--out", run, "--config", config, "--ssl", "boom", fakes=["badalgos"])
    assert proc.returncode == 1
    assert error_line(proc.stderr) == (
        "error: ssl 'boom' (aa-badalgos 1.0) raised RuntimeError: kaboom at 3 at refine step 3; "
        f"the traceback is in {run / 'error.log'}"
    )
    assert "Traceback" not in proc.stderr
    log = (run / "error.log").read_text()
    assert "--- refine stage" in log and 'raise RuntimeError(f"kaboom at {step}")' in log


def test_a_non_finite_logged_value_names_the_value(adapted, tmp_path):
    run, config = copy(adapted, tmp_path)
    proc = aa("run", "--out", run, "--config", config, "--ssl", "nanlog", fakes=["badalgos"], env={"AA_FAKE_FAIL_AT": "5"})
    assert proc.returncode == 1
    assert error_line(proc.stderr).startswith(
        "error: ssl 'nanlog' (aa-badalgos 1.0) gave a non-finite value 'ratio' (nan) at refine step 5; the checkpoint at step 4 is kept"
    )


def test_a_uda_plugin_raising_names_the_adapt_step(adapted, tmp_path):
    run, config = copy(adapted, tmp_path)
    proc = aa("run", "--out", run, "--config", config, "--uda", "boom", fakes=["badalgos"])
    assert proc.returncode == 1
    assert error_line(proc.stderr) == (
        "error: uda 'boom' (aa-badalgos 1.0) raised ValueError: a shape went wrong at adapt step 3; "
        f"the traceback is in {run / 'error.log'}"
    )


def test_update_refuses_a_non_finite_loss_before_touching_the_weights():
    from accelerate import Accelerator

    from aa_core.training.optim import Update

    layer = torch.nn.Linear(2, 1)
    before = layer.weight.detach().clone()
    update = Update(torch.optim.SGD(layer.parameters(), lr=1.0), Accelerator(cpu=True))
    with pytest.raises(NonFinite, match="loss = inf"):
        update(layer(torch.ones(1, 2)).sum() * math.inf)
    assert torch.equal(layer.weight, before) and layer.weight.grad is None
    update(layer(torch.ones(1, 2)).sum())  # a finite loss steps
    assert not torch.equal(layer.weight, before)


def test_metrics_are_strict_json():
    text = strict_json({"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": 0.5})
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": 0.5}
