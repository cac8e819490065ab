"""Which trained model is the run's result, chosen without target labels.

Refining trains on pseudo-labels; when they are mostly wrong it makes the model worse, and a user
without labels cannot see it. So the refined model is kept only when label-free evidence says
it is no worse than the adapted one (``refine.keep: auto``, the default):

1. the confident split was reliable (its mean score at least ``refine_stage.RELIABLE_SCORE``):
   an unreliable split hands SSL many wrong labels; and
2. the refined model's predictions on the target are at least as well clustered as the adapted
   model's by soft neighbourhood density (``selection.soft_neighbourhood_density``), up to
   ``SND_TOLERANCE``: :math:`\\mathrm{SND}(p^{refine}) \\ge \\mathrm{SND}(p^{adapt}) - \\tau`.

Otherwise the adapted model stays final. ``refine.keep: refine`` or ``adapt`` forces the choice.
The rule was chosen on the dev halves of three pairs (docs/protocol.md); every criterion's
value for each model is recorded in ``metrics.json`` (``label_free``), with the choice and its
reason (``final``).
"""

from __future__ import annotations

import torch

from aa_core.selection import score

CRITERIA = ("entropy", "infomax", "snd")
SND_TOLERANCE = 0.05  # nats; refining sharpens predictions, which moves SND by a little either way


def label_free(probabilities: torch.Tensor) -> dict[str, float]:
    """Every criterion of ``selection`` for one model's target probabilities (higher is better)."""
    return {name: round(score(probabilities, name), 6) for name in CRITERIA}


def choose(keep: str, reliable: bool, adapt: dict[str, float], refine: dict[str, float]) -> tuple[str, str]:
    """The final model ("adapt" or "refine") and why, from the split's reliability and the
    label-free criteria of the two models."""
    if keep != "auto":
        return keep, f"refine.keep is {keep}"
    if not reliable:
        return "adapt", "the confident split was unreliable, so refining trained on doubtful pseudo-labels"
    if refine["snd"] < adapt["snd"] - SND_TOLERANCE:
        return "adapt", f"refining lowered the target's soft neighbourhood density ({adapt['snd']:.3f} -> {refine['snd']:.3f})"
    return "refine", "the split was reliable and refining kept the target's soft neighbourhood density"
