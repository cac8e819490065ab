"""Training resumes inside a stage: a run stopped after a checkpoint ends bitwise as an uninterrupted one.

Each run here is the real pipeline in this process, on a real labelled source (so no synthesis);
the stop is an exception raised from the ``aa_checkpoint`` hook right after a save, as a kill
at that moment leaves the folder. The uninterrupted run saves no checkpoint at all, so the
comparison also shows that saving changes nothing.
"""

from __future__ import annotations

import json

import pytest

from aa_core.api import hookimpl
from aa_core.config import load_config
from aa_core.plugins import plugin_manager
from aa_core.runs import execute

STEPS = 8

# (name, --set items, the training part stopped, the weights it ends in)
CASES = [
    ("source only", ["uda.name=none", "ssl.name=none", f"source_only.steps={STEPS}"], "source_only", "adapt"),
    ("dann", ["uda.name=dann", "ssl.name=none"], "adapt", "adapt"),
    # augmented in this process, after source-only training drew from the same generator: the replay starts where the part did
    ("dann, weak views", ["uda.name=dann", "ssl.name=none", "data.adapt_view=weak"], "adapt", "adapt"),
    ("mcd", ["uda.name=mcd", "ssl.name=none"], "adapt", "adapt"),
    ("symnets", ["uda.name=symnets", "ssl.name=none"], "adapt", "adapt"),
    ("cdtrans", ["uda.name=cdtrans", "ssl.name=none", "uda.refreshes=3", "model.backbone=aa_vit_tiny"], "adapt", "adapt"),
    ("dann, entropy selection", ["uda.name=dann", "ssl.name=none", "train.select=entropy", "train.select_every=3"], "adapt", "adapt"),
    ("dann, ensv selection", ["uda.name=dann", "ssl.name=none", "train.select=ensv", "train.select_every=2"], "adapt", "adapt"),
    ("adamatch", ["uda.name=adamatch", "ssl.name=none"], "adapt", "adapt"),
    ("shot", ["uda.name=shot", "ssl.name=none", "uda.refreshes=3"], "adapt", "adapt"),
    ("freematch", ["uda.name=none", "ssl.name=freematch"], "refine", "refine"),
    ("softmatch", ["uda.name=none", "ssl.name=softmatch"], "refine", "refine"),
    ("fixmatch", ["uda.name=none", "ssl.name=fixmatch"], "refine", "refine"),
    ("fixmatch, 2 loader workers", ["uda.name=none", "ssl.name=fixmatch", "data.num_workers=2"], "refine", "refine"),
    ("mixmatch", ["uda.name=none", "ssl.name=mixmatch"], "refine", "refine"),
]


class Stopped(BaseException):
    """What a kill does to the process: nothing after this point runs."""


class StopAfter:
    def __init__(self, part: str, step: int):
        self.part, self.step, self.saved = part, step, []

    @hookimpl
    def aa_checkpoint(self, stage, step, path):
        self.saved.append((stage, step))
        if (stage, step) == (self.part, self.step):
            raise Stopped


def config(target, sets: list[str], checkpoint_every: int):
    common = [
        f"data.source={target}", f"data.target={target}", "train.batch_size=8", f"train.steps={STEPS}",
        f"train.refine_steps={STEPS}", "source_only.steps=4", f"train.checkpoint_every={checkpoint_every}",
    ]  # fmt: skip
    return load_config(sets=common + sets)


@pytest.mark.parametrize(("name", "sets", "part", "weights"), CASES, ids=[c[0] for c in CASES])
def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_weights_and_metrics(tmp_path, small_target, name, sets, part, weights):
    whole = tmp_path / "whole"
    expected = execute(config(small_target, sets, checkpoint_every=0), whole)
    assert not (whole / "checkpoints").exists()

    stopped = tmp_path / "stopped"
    stop = StopAfter(part, 6)
    plugin_manager().pm.register(stop, name="stop-after")
    try:
        with pytest.raises(Stopped):
            execute(config(small_target, sets, checkpoint_every=3), stopped)
    finally:
        plugin_manager().pm.unregister(name="stop-after")
    assert stop.saved[-2:] == [(part, 3), (part, 6)]
    assert [p.name for p in (stopped / "checkpoints" / part).iterdir()] == ["step-00000006"]  # the older one removed
    state = stopped / "stages.json"
    assert part not in (json.loads(state.read_text()) if state.exists() else {})

    resumed = execute(config(small_target, sets, checkpoint_every=3), stopped)
    assert (stopped / f"{weights}.safetensors").read_bytes() == (whole / f"{weights}.safetensors").read_bytes()
    assert (stopped / "train_log.jsonl").read_text() == (whole / "train_log.jsonl").read_text()  # no step logged twice
    drop = ("seconds",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in expected.items() if k not in drop}
    assert not (stopped / "checkpoints").exists()  # removed once the stage completed
    if any(item.startswith("train.select=") for item in sets):
        assert (stopped / "selection.json").read_text() == (whole / "selection.json").read_text()


def test_a_checkpoint_of_other_inputs_is_not_resumed(tmp_path, small_target):
    """Changing what the stage depends on (here the UDA's trade-off) starts it again from step 0."""
    out = tmp_path / "run"
    sets = ["uda.name=dann", "ssl.name=none"]
    plugin_manager().pm.register(StopAfter("adapt", 3), name="stop-after")
    try:
        with pytest.raises(Stopped):
            execute(config(small_target, sets, checkpoint_every=3), out)
    finally:
        plugin_manager().pm.unregister(name="stop-after")
    changed = sets + ["uda.trade_off=0.5"]
    execute(config(small_target, changed, checkpoint_every=3), out)
    whole = tmp_path / "whole"
    execute(config(small_target, changed, checkpoint_every=0), whole)
    assert (out / "adapt.safetensors").read_bytes() == (whole / "adapt.safetensors").read_bytes()
