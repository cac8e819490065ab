"""``model.backbone=vlm``: the VLM's image tower as the backbone, the zero-shot classifier as the head.

.. math::
    f = \\frac{t(x)}{\\lVert t(x) \\rVert}, \\qquad \\mathrm{logits} = (s W) f + b

with :math:`t` the image tower (``VisionLanguageModel.image_tower``), :math:`W` the zero-shot
row's text weights and :math:`s, b` its logit scale and bias (``zero_shot_head.safetensors``).
There is no bottleneck: :math:`f` is the tower's normalised embedding, so before any training
step the classifier is the zero-shot classifier, and every algorithm adapts it from there.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aa_core.errors import AAError
from aa_core.models.classifier import ImageClassifier


class Normalised(nn.Module):
    """The tower's embedding, L2-normalised (as the zero-shot classifier sees it)."""

    def __init__(self, tower: nn.Module, num_features: int):
        super().__init__()
        self.tower = tower
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.tower(x).float()
        return e / e.norm(dim=1, keepdim=True)


def vlm_classifier(head_file: Path, cls: type, options, num_classes: int) -> ImageClassifier:
    """The tower of VLM ``cls`` with its weights, the head set to the zero-shot classifier in ``head_file``."""
    from safetensors.torch import load_file

    from aa_core.contracts import VLMContext

    if not head_file.is_file():
        raise AAError(f"model.backbone=vlm starts from the zero-shot row, and {head_file} is missing; run `aa adapt {head_file.parent}`")
    head = load_file(head_file)
    with torch.random.fork_rng(devices=[]):  # loading may initialise weights: the run draws what it would have drawn
        vlm = cls(options, VLMContext(device=torch.device("cpu")))
        tower = vlm.image_tower().float()
    weights = head["weights"]
    classifier = ImageClassifier(Normalised(tower, weights.shape[1]), num_classes, bottleneck_dim=None)
    with torch.no_grad():
        classifier.head.weight.copy_(head["scale"] * weights)
        classifier.head.bias.fill_(float(head["bias"]))
    return classifier
