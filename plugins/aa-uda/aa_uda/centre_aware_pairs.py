"""CDTrans' two-way centre-aware pseudo-labelling: which source and target images train together.

**Target pseudo-labels** (SHOT's, Liang et al. 2020). With :math:`p_i` the target softmax and
:math:`\\hat f_i = [f_i; 1] / \\lVert [f_i; 1] \\rVert` the L2-normalised bottleneck features,
the class centres and labels are

.. math::
    c_k = \\frac{\\sum_i p_{ik} \\hat f_i}{\\sum_i p_{ik}}, \\qquad
    \\hat y_i = \\arg\\min_{k \\in \\mathcal K} \\big(1 - \\cos(\\hat f_i, c_k)\\big)

over the classes :math:`\\mathcal K` some image is predicted as; then once more with one-hot
:math:`p_{ik} = [\\hat y_i = k]`.

**Two-way pairs.** With :math:`g` the L2-normalised backbone features (the class token) and
:math:`S = g_s g_t^\\top`, each target image takes its most similar source image and each source
image its most similar target image:

.. math::
    \\mathcal P = \\{(\\arg\\max_s S_{st},\\ t)\\}_t \\ \\cup\\ \\{(s,\\ \\arg\\max_t S_{st})\\}_s

and the label-consistency filter keeps a pair only when the source label equals the target's
pseudo-label. :math:`S` is computed in blocks of source rows sized so that a block holds a
bounded number of similarities, whatever the sizes of the two sets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shot_labels(features: torch.Tensor, logits: torch.Tensor, rounds: int = 1) -> torch.Tensor:
    """:math:`\\hat y` above from the target's bottleneck features and logits."""
    f = F.normalize(torch.cat([features, features.new_ones(len(features), 1)], dim=1), dim=1)
    weights = logits.softmax(dim=1)
    present = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1]) > 0
    labels = _nearest_centre(f, weights, present)
    for _ in range(rounds):
        labels = _nearest_centre(f, F.one_hot(labels, logits.shape[1]).to(f.dtype), present)
    return labels


def _nearest_centre(f: torch.Tensor, weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    centres = (weights.T @ f) / (weights.sum(dim=0)[:, None] + 1e-8)
    similarity = F.normalize(centres, dim=1) @ f.T  # cosine, (classes, images)
    similarity[~present] = -float("inf")
    return similarity.argmax(dim=0)


def nearest_both_ways(g_s: torch.Tensor, g_t: torch.Tensor, block_entries: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """For L2-normalised rows: each source row's most similar target, each target row's most similar source.

    ``S`` is computed a block of source rows at a time, ``block_entries`` similarities at most
    (64 MB in float32), whatever the sizes of the two sets.
    """
    block = max(1, block_entries // max(len(g_t), 1))
    target_of = torch.empty(len(g_s), dtype=torch.long, device=g_s.device)
    best = torch.full((len(g_t),), -float("inf"), device=g_s.device)
    source_of = torch.zeros(len(g_t), dtype=torch.long, device=g_s.device)
    for start in range(0, len(g_s), block):
        s = g_s[start : start + block] @ g_t.T
        target_of[start : start + len(s)] = s.argmax(dim=1)
        value, row = s.max(dim=0)
        better = value > best
        best[better], source_of[better] = value[better], row[better] + start
    return target_of, source_of


def centre_aware_pairs(
    g_s: torch.Tensor, y_s: torch.Tensor, g_t: torch.Tensor, y_t: torch.Tensor, label_filter: bool = True
) -> torch.Tensor:
    """:math:`\\mathcal P` above as a (pairs, 2) tensor of (source index, target index).

    ``g_*`` are L2-normalised backbone features, ``y_s`` the source labels and ``y_t`` the
    target pseudo-labels.
    """
    target_of, source_of = nearest_both_ways(g_s, g_t)
    from_targets = torch.stack([source_of, torch.arange(len(g_t), device=g_t.device)], dim=1)
    from_sources = torch.stack([torch.arange(len(g_s), device=g_s.device), target_of], dim=1)
    pairs = torch.cat([from_targets, from_sources])
    if label_filter:
        pairs = pairs[y_s[pairs[:, 0]] == y_t[pairs[:, 1]]]
    return pairs
