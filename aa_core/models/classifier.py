"""The classifier every stage trains: backbone -> bottleneck -> head (as in tllib's ImageClassifier).

.. math::
    f = \\mathrm{ReLU}(\\mathrm{BN}(W_b\\, g(x))), \\qquad \\mathrm{logits} = W_h f

``g`` is any timm model with its classifier removed (pooled features of width ``d``), ``W_b`` maps
``d`` to ``bottleneck_dim`` and ``W_h`` to the number of classes. Adaptation losses act on ``f``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aa_core.config import ModelConfig
from aa_core.errors import AAError
from aa_core.models.memory_format import channels_last

DEFAULT_BACKBONE = "aa_small_cnn"  # for a config that names none and an algorithm without a default_backbone


class ImageClassifier(nn.Module):
    """``bottleneck_dim=None``: no bottleneck, :math:`f = g(x)` (a VLM's tower, whose head is its zero-shot classifier)."""

    def __init__(self, backbone: nn.Module, num_classes: int, bottleneck_dim: int | None = 256):
        super().__init__()
        self.backbone = backbone
        width = backbone.num_features
        if bottleneck_dim is None:
            self.bottleneck = nn.Identity()
        else:
            self.bottleneck = nn.Sequential(nn.Linear(width, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU())
            width = bottleneck_dim
        self.head = nn.Linear(width, num_classes)
        self.num_classes = num_classes
        self.features_dim = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck features ``f``."""
        return self.bottleneck(self.backbone(x))

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits, or ``(logits, f)`` with ``with_features`` (one pass through any DDP wrapper)."""
        f = self.features(x)
        return (self.head(f), f) if with_features else self.head(f)


def built_on_meta(build):
    """``build()`` on the meta device (the architecture, no memory); on the CPU where a model cannot
    be built there (timm before ``calculate_drop_path_rates``, 1.0.3 the floor, reads a ViT's
    drop-path rates with ``.item()``)."""
    try:
        with torch.device("meta"):
            return build()
    except RuntimeError as exc:
        if "meta tensors" not in str(exc):
            raise
        return build()


def build_classifier(
    model: ModelConfig, num_classes: int, channels: int, pretrained: bool | str | None = None, *, for_training: bool = True
) -> ImageClassifier:
    """A fresh classifier; ``model.backbone`` is a timm name, pretrained weights load through timm.

    ``model.pretrained`` is true for the model's own weights (the hub), or the path of a local
    checkpoint (safetensors or a torch state dict) for the same architecture; timm drops its
    classifier and adapts its first layer to ``channels``. ``pretrained=False`` skips loading
    weights that are about to be replaced by saved ones. A classifier ``for_training`` stores its
    2-d convolution weights channels-last, the layout convolutions train fastest in; one built
    to load saved weights and predict keeps torch's default layout.
    """
    import timm

    import aa_core.models.small_cnn  # noqa: F401  (registers aa_small_cnn with timm)
    import aa_core.models.tiny_vit  # noqa: F401  (registers aa_vit_tiny)

    pretrained = model.pretrained if pretrained is None else pretrained
    name = model.backbone or DEFAULT_BACKBONE
    local = {"pretrained_cfg_overlay": {"file": str(pretrained)}} if isinstance(pretrained, str) else {}
    if local and not Path(pretrained).is_file():
        raise AAError(f"checkpoint {pretrained} does not exist; set model.pretrained to a checkpoint file, true (the hub's) or false")
    try:
        backbone = timm.create_model(name, pretrained=bool(pretrained), num_classes=0, in_chans=channels, **local)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise AAError(f"unknown backbone '{name}'; use a timm model name (timm.list_models())") from None
        if not local:
            raise
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AAError(f"model.pretrained {pretrained} is not a checkpoint of backbone '{name}' ({reason}); "
                      "give that architecture's checkpoint, or set model.backbone to the checkpoint's") from None  # fmt: skip
    except Exception as exc:
        if not pretrained:
            raise
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise AAError(
            f"cannot load pretrained weights for backbone '{name}' ({type(exc).__name__}: {reason}); "
            "check the network or the hub cache, or set model.pretrained=false"
        ) from None
    classifier = ImageClassifier(backbone, num_classes, model.bottleneck_dim)
    return channels_last(classifier) if for_training else classifier
