"""The confident / unconfident split: per predicted class, the most confident fraction."""

import torch

from aa_core.confident_split import ConfidentSplit


def test_each_predicted_class_keeps_its_most_confident_fraction():
    probabilities = torch.tensor(
        [
            [0.90, 0.10],  # class 0, 0.90
            [0.60, 0.40],  # class 0, 0.60
            [0.80, 0.20],  # class 0, 0.80
            [0.70, 0.30],  # class 0, 0.70
            [0.45, 0.55],  # class 1, 0.55: the weakest overall, still kept for class 1
            [0.48, 0.52],  # class 1, 0.52
        ]
    )
    split = ConfidentSplit(0.5)(probabilities)
    assert split.confident.tolist() == [0, 2, 4]
    assert split.pseudo_labels.tolist() == [0, 0, 1]
    assert split.unconfident.tolist() == [1, 3, 5]


def test_fraction_rounds_up_so_a_single_member_class_is_kept():
    probabilities = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.2, 0.7]])
    split = ConfidentSplit(0.1)(probabilities)
    assert split.confident.tolist() == [0, 2]
    assert split.pseudo_labels.tolist() == [0, 2]
    assert split.unconfident.tolist() == [1]


def test_split_is_a_partition():
    probabilities = torch.softmax(torch.randn(100, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    split = ConfidentSplit(0.3)(probabilities)
    both = torch.cat([split.confident, split.unconfident]).sort().values
    assert both.tolist() == list(range(100))
