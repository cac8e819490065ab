"""The label-free choice of the run's final model (``aa_core.final_model``)."""

import math

import pytest
import torch

from aa_core.final_model import choose, label_free


def test_label_free_criteria_by_hand():
    values = label_free(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert values["entropy"] == pytest.approx(-math.log(2) / 2, abs=1e-6)
    mean = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # H of the mean prediction [0.75, 0.25]
    assert values["infomax"] == pytest.approx(mean - math.log(2) / 2, abs=1e-6)
    # two images, each the other's only neighbour: q is one-hot, so the density is 0
    assert values["snd"] == pytest.approx(0.0, abs=1e-6)


def test_the_refined_model_is_kept_only_after_a_reliable_split_unless_forced():
    assert choose("auto", True) == ("refine", "the confident split was reliable")
    kept, why = choose("auto", False)
    assert kept == "adapt" and "unreliable" in why
    assert choose("refine", False) == ("refine", "refine.keep is refine")
    assert choose("adapt", True) == ("adapt", "refine.keep is adapt")
