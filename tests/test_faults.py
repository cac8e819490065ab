"""The short version of ``benchmarks/faults.py``: real ``aa run`` processes killed with SIGKILL
inside a stage, resumed to the same result; a full disk ends in one line and resumes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

spec = importlib.util.spec_from_file_location("faults", Path(__file__).parent.parent / "benchmarks" / "faults.py")
faults = importlib.util.module_from_spec(spec)
sys.modules["faults"] = faults
spec.loader.exec_module(faults)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(faults.CONFIG))
    done = faults.run_to_end("run", work / "reference", config)
    assert done.returncode == 0, done.stderr[-2000:]
    return config, faults.summary(work / "reference"), faults.stage_seconds(work / "reference")


@pytest.mark.parametrize(("stage", "share"), [("generate", 0.5), ("adapt", 0.6)])  # refine: tests/test_resume.py
def test_a_run_killed_inside_a_stage_resumes_to_the_uninterrupted_result(tmp_path, reference, stage, share):
    config, expected, seconds = reference
    out = tmp_path / "run"
    killed, at = faults.run_and_kill("run", out, config, stage, share * seconds[stage])
    assert killed, at  # in the stage, or (on a loaded machine, the delay outlasting it) a later one
    resumed = faults.run_to_end("run", out, config)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    got = faults.summary(out)
    assert got["files"] == expected["files"]  # no partial file, temporary, journal or checkpoint left
    assert got == expected  # metrics and weights, bit for bit
    assert faults.undecodable(out) == 0


def test_a_full_disk_is_one_line_and_the_run_finishes_once_space_is_back(tmp_path, reference):
    config, expected, _ = reference
    one_line, same, said = faults.disk_full(tmp_path, config, expected, tmpfs=False)  # a file size limit: no root needed
    assert one_line, said
    assert same, said
