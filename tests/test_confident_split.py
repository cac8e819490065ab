"""The confident / unconfident split: per predicted class, by fraction, threshold or top-k of a view-averaged score."""

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
    split = ConfidentSplit(fraction=0.5)(probabilities)
    assert split.confident.tolist() == [0, 2, 4]
    assert split.pseudo_labels.tolist() == [0, 0, 1]
    assert split.unconfident.tolist() == [1, 3, 5]


def test_fraction_rounds_up_so_a_single_member_class_is_kept():
    probabilities = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.2, 0.7]])
    split = ConfidentSplit(fraction=0.1, min_per_class=0)(probabilities)
    assert split.confident.tolist() == [0, 2]
    assert split.pseudo_labels.tolist() == [0, 2]
    assert split.unconfident.tolist() == [1]


def test_split_is_a_partition():
    probabilities = torch.softmax(torch.randn(100, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    split = ConfidentSplit(fraction=0.3)(probabilities)
    both = torch.cat([split.confident, split.unconfident]).sort().values
    assert both.tolist() == list(range(100))


PROBABILITIES = torch.tensor(
    [
        [0.95, 0.05, 0.0],  # class 0
        [0.90, 0.10, 0.0],  # class 0
        [0.60, 0.40, 0.0],  # class 0
        [0.30, 0.70, 0.0],  # class 1
        [0.45, 0.55, 0.0],  # class 1
        [0.0, 0.35, 0.65],  # class 2
    ]
)


def test_threshold_keeps_scores_above_it_and_min_per_class_keeps_each_class_represented():
    split = ConfidentSplit("threshold", threshold=0.8, min_per_class=1)(PROBABILITIES)
    assert split.confident.tolist() == [0, 1, 3, 5]  # class 0 above 0.8; classes 1 and 2 keep their best
    split = ConfidentSplit("threshold", threshold=0.8, min_per_class=0)(PROBABILITIES)
    assert split.confident.tolist() == [0, 1]
    split = ConfidentSplit("threshold", threshold=0.8, min_per_class=5)(PROBABILITIES)
    assert split.confident.tolist() == [0, 1, 2, 3, 4, 5]  # no class has five: all kept


def test_topk_keeps_the_k_best_of_each_class():
    split = ConfidentSplit("topk", top_k=2, min_per_class=0)(PROBABILITIES)
    assert split.confident.tolist() == [0, 1, 3, 4, 5]
    assert split.pseudo_labels.tolist() == [0, 0, 1, 1, 2]


def test_the_score_averages_the_predicted_class_over_views():
    # image 0's prediction flips under both weak views, image 1's holds: 1 ranks first now
    weak = torch.tensor([[0.2, 0.8, 0.0], [0.85, 0.15, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.45, 0.55, 0.0], [0, 0.35, 0.65]])
    split = ConfidentSplit("topk", top_k=1, min_per_class=0)(PROBABILITIES, views=[weak, weak])
    assert torch.allclose(split.score[:2], torch.tensor([(0.95 + 0.2 + 0.2) / 3, (0.9 + 0.85 + 0.85) / 3]))
    assert split.confident.tolist() == [1, 3, 5]


def test_ties_fall_by_a_seeded_draw_not_by_file_order():
    # twelve images, all predicted class 0 with the same saturated score: half are kept
    probabilities = torch.tensor([[1.0, 0.0]] * 12)
    kept = {seed: ConfidentSplit(fraction=0.5)(probabilities, seed=seed).confident.tolist() for seed in range(4)}
    assert all(len(k) == 6 for k in kept.values())
    assert kept[0] == ConfidentSplit(fraction=0.5)(probabilities, seed=0).confident.tolist()  # the same seed, the same draw
    assert len({tuple(k) for k in kept.values()}) > 1 and list(range(6)) not in kept.values()
    # a higher score still wins over any draw
    probabilities[7] = torch.tensor([1.0, 0.0])
    probabilities[:7] = probabilities[8:] = torch.tensor([0.9, 0.1])
    assert all(7 in ConfidentSplit(fraction=0.1)(probabilities, seed=s).confident.tolist() for s in range(4))
