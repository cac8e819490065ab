"""The label-free choice of the run's final model among every candidate (``aa_core.final_model``)."""

import math

import pytest
import torch

from aa_core.final_model import ADVICE, AUTO, RULES, Evidence, choose, label_free, told


def test_label_free_criteria_by_hand():
    values = label_free(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert values["entropy"] == pytest.approx(-math.log(2) / 2, abs=1e-6)
    mean = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # H of the mean prediction [0.75, 0.25]
    assert values["infomax"] == pytest.approx(mean - math.log(2) / 2, abs=1e-6)
    # two images, each the other's only neighbour: q is one-hot, so the density is 0
    assert values["snd"] == pytest.approx(0.0, abs=1e-6)


def values(ensv: float, snd: float = 0.0, entropy: float = 0.0, infomax: float = 0.0, agreement: float = 0.0) -> dict[str, float]:
    return {"entropy": entropy, "infomax": infomax, "snd": snd, "ensv": ensv, "agreement": agreement}


# issue 38's run: adaptation made the model worse; SND ranks the start first, entropy and infomax refine
HURT = {"source_only": values(0.80, snd=4.41, entropy=-0.9, infomax=1.1), "adapt": values(0.70, snd=3.77, entropy=-0.8, infomax=1.2),
        "refine": values(0.75, snd=4.04, entropy=-0.5, infomax=1.4)}  # fmt: skip


def test_the_default_rule_is_the_split_then_ensv_and_every_rule_is_listed():
    assert AUTO == "ensv"
    criteria = ("entropy", "infomax", "snd", "ensv", "agreement")
    assert set(RULES) == {"split", *criteria, *(f"split+{name}" for name in criteria)}


def test_the_split_rule_keeps_refine_after_a_reliable_split_and_adapt_after_an_unreliable_one():
    assert choose("auto", Evidence(HURT, reliable=True), "split").model == "refine"
    kept = choose("auto", Evidence(HURT, reliable=False), "split")
    assert (kept.model, kept.runner_up, kept.rule) == ("adapt", "refine", "split") and "unreliable" in kept.reason


def test_one_criterion_ranks_every_candidate_highest_first():
    assert choose("auto", Evidence(HURT, False), "snd").model == "source_only"  # 4.41 > 4.04 > 3.77
    assert choose("auto", Evidence(HURT, False), "snd").reason == (
        "the highest snd: source_only 4.4100, refine 4.0400, adapt 3.7700, so "
        "adaptation and refinement left the model worse than its start by the label-free evidence")
    ranked = "the highest entropy: refine -0.5000, adapt -0.8000, source_only -0.9000"
    assert choose("auto", Evidence(HURT, False), "entropy").reason == ranked
    assert choose("auto", Evidence(HURT, False), "infomax").model == "refine"  # 1.4 > 1.2 > 1.1
    without = {name: HURT[name] for name in ("source_only", "adapt")}  # a run that does not refine
    assert choose("auto", Evidence(without, None), "snd").reason.endswith(
        ", so adaptation left the model worse than its start by the label-free evidence")
    assert choose("auto", Evidence({**HURT, "adapt": values(0.7, snd=9)}, False), "snd").reason.endswith(
        ", so refinement left the model worse than the adapted one by the label-free evidence")
    assert choose("auto", Evidence(HURT, False), "snd").runner_up == "refine"
    assert choose("auto", Evidence(HURT, False), "entropy").model == "refine"  # -0.5 > -0.8 > -0.9
    assert choose("auto", Evidence(HURT, False), "ensv").model == "source_only"  # 0.80 > 0.75 > 0.70


def test_auto_catches_stages_that_made_the_start_worse_and_keeps_the_start():
    """EnsV: the start agrees with the candidates' ensemble on 80% of the images, refine 75%, adapt 70%."""
    final = choose("auto", Evidence(HURT, reliable=True))
    assert (final.model, final.runner_up, final.rule) == ("source_only", "refine", "ensv")
    assert final.reason == ("the highest ensv: source_only 0.8000, refine 0.7500, adapt 0.7000, "
                            "so adaptation and refinement left the model worse than its start by the label-free evidence")
    assert choose("auto", Evidence({**HURT, "refine": values(0.85)}, reliable=False)).model == "refine"  # whatever the split said


def test_after_an_unreliable_split_adaptation_that_made_the_start_worse_is_caught():
    """split+ensv: the split is unreliable, so refine is out; adapt's EnsV 0.70 is below the start's 0.80."""
    final = choose("auto", Evidence(HURT, reliable=False), "split+ensv")
    assert (final.model, final.runner_up, final.rule) == ("source_only", "adapt", "split+ensv")
    assert final.reason == "adapt's ensv is below source_only's: adaptation left the model worse than its start by the label-free evidence"


def test_refinement_is_kept_where_the_split_is_reliable_and_it_agrees_more_than_its_start():
    better = {**HURT, "refine": values(0.85)}
    final = choose("auto", Evidence(better, reliable=True), "split+ensv")
    assert (final.model, final.runner_up) == ("refine", "source_only")
    assert final.reason == "the confident split was reliable, and its ensv is above source_only's"
    # below its start, the refined model is not kept either: refinement's negative transfer
    worse = choose("auto", Evidence(HURT, reliable=True), "split+ensv")
    assert worse.model == "source_only" and worse.reason.startswith("refine's ensv is below source_only's: adaptation and refinement left")


def test_the_zero_shot_row_is_a_candidate_and_a_tie_keeps_the_later_stage():
    with_vlm = {"zero_shot": values(0.90), **HURT, "refine": values(0.85)}
    final = choose("auto", Evidence(with_vlm, reliable=True), "split+ensv")
    assert (final.model, final.runner_up) == ("zero_shot", "refine")
    assert final.reason == ("refine's ensv is below zero_shot's: "
                            "the zero_shot model is better than the refine one by the label-free evidence")
    tied = {"source_only": values(0.8), "adapt": values(0.8)}  # a run without refinement: adapt against its start
    final = choose("auto", Evidence(tied, reliable=None), "split+ensv")
    assert (final.model, final.runner_up) == ("adapt", "source_only")
    assert final.reason == "the run does not refine, and its ensv is above source_only's"


def test_refine_keep_forces_a_candidate_whatever_the_evidence():
    final = choose("refine", Evidence(HURT, reliable=False))
    assert final.record() == {"model": "refine", "runner_up": "adapt", "rule": "refine.keep", "reason": "refine.keep is refine"}
    assert choose("source_only", Evidence(HURT, reliable=True)).runner_up == "refine"


def test_the_user_is_told_which_model_was_kept_why_and_what_to_do():
    caught = choose("auto", Evidence(HURT, reliable=False), "split+ensv").record()
    lines = told({"final": caught, "split": {}})
    assert lines[0] == f"final model: source_only ({caught['reason']}; runner-up adapt)"
    assert lines[1] == f"the final model is not the refined one: {ADVICE}"
    assert "--uda none" in ADVICE and "--vlm clip" in ADVICE and "model.backbone" in ADVICE
    kept = choose("auto", Evidence({**HURT, "refine": values(0.85)}, reliable=True), "split+ensv").record()
    assert told({"final": kept, "split": {}}) == [f"final model: refine ({kept['reason']}; runner-up source_only)"]
    forced = choose("adapt", Evidence(HURT, reliable=True)).record()
    assert len(told({"final": forced, "split": {}})) == 1  # the user chose it: nothing to advise
    assert told({"final": {"model": "adapt", "reason": "an older run"}}) == ["final model: adapt (an older run)"]
