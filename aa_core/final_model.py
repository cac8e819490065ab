"""Which trained model is the run's result, chosen without target labels.

Refining trains on pseudo-labels; when they are mostly wrong it makes the model worse, and a user
without labels cannot see it. So with ``refine.keep: auto`` (the default) the refined model is
the result only when the confident split was reliable: its images' mean score at least
``refine.RELIABLE_SCORE`` (docs/split.md). An unreliable split hands SSL many wrong labels, and
the adapted model stays final. ``refine.keep: refine`` or ``adapt`` forces the choice.

Why not compare the two models by a label-free criterion of their target predictions (entropy,
information maximisation, soft neighbourhood density)? On the dev halves these criteria pointed
the wrong way both ways (docs/protocol.md): after CDTrans, MixMatch raised accuracy by 6.7 points
while making predictions less confident, so every criterion fell; on the photographed digits,
FixMatch lowered dev accuracy while every criterion rose. They measure confidence, which the
SSL objectives themselves move. Their values are still recorded for each model in
``metrics.json`` (``label_free``), beside the choice and its reason (``final``).
"""

from __future__ import annotations

import torch

from aa_core.selection import score

CRITERIA = ("entropy", "infomax", "snd")


def label_free(probabilities: torch.Tensor) -> dict[str, float]:
    """Every criterion of ``selection`` for one model's target probabilities (higher is better);
    ``ensv``, which ranks the run's models together, is added by the evaluate stage."""
    return {name: round(score(probabilities, name), 6) for name in CRITERIA}


def choose(keep: str, reliable: bool) -> tuple[str, str]:
    """The final model ("adapt" or "refine") and why, from ``refine.keep`` and the split's reliability."""
    if keep != "auto":
        return keep, f"refine.keep is {keep}"
    if not reliable:
        return "adapt", "the confident split was unreliable, so refining trained on doubtful pseudo-labels"
    return "refine", "the confident split was reliable"
