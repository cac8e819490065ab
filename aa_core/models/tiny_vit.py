"""A tiny hybrid vision transformer for tiny images, registered with timm as ``aa_vit_tiny``.

timm's ViTs start at 224x224 with 16x16 patches: one token for an 8x8 digit. This is timm's own
``VisionTransformer`` (so anything written for timm ViTs, CDTrans' three branches among them,
works on it) with 2 blocks of width 64 and 4 heads, over a two-layer convolutional stem cut into
2x2 patches (timm's ``HybridEmbed``, as its ResNet-ViT hybrids): 16 patch tokens and a class
token for an 8x8 image. The stem is there because a plain ViT learns slowly from a few thousand
images: after the core's 500 source-only steps on the digits task, dev accuracy was 0.22 with
plain 2x2 patches and 0.79 with the stem (0.83 for ``aa_small_cnn``). Two blocks adapted better
than four under CDTrans (seed 0, dev 0.903 against 0.886) in two thirds of the time.
``dynamic_img_size`` resamples the position embedding for other sizes.
"""

from __future__ import annotations

from functools import partial

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

try:
    from timm.layers import HybridEmbed
except ImportError:  # timm before 1.0.9 kept it with its hybrid models
    from timm.models.vision_transformer_hybrid import HybridEmbed


def conv_stem(in_chans: int, width: int = 32) -> nn.Sequential:
    """conv3x3(width)-BN-ReLU-conv3x3(2 width)-BN-ReLU, at the input's resolution."""
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
    )  # fmt: skip


@register_model
def aa_vit_tiny(pretrained: bool = False, **kwargs) -> VisionTransformer:
    if pretrained:
        raise ValueError("aa_vit_tiny has no pretrained weights")
    in_chans = kwargs.get("in_chans", 3)
    return VisionTransformer(
        img_size=kwargs.get("img_size", 8), patch_size=2, in_chans=in_chans, num_classes=kwargs.get("num_classes", 0),
        embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0, dynamic_img_size=True,
        embed_layer=partial(HybridEmbed, backbone=conv_stem(in_chans)),
    )  # fmt: skip
