"""One input format for every image, and the augmentations built on it.

Source and target images differ in size and mode (a 512x512 RGB render, an 8x8 grey scan); each
is converted to ``channels`` and resized to ``image_size`` square once (``prepare``), then viewed
plainly or augmented, and normalised: :math:`(x - \\mu) / \\sigma` on [0, 1] with a pretrained
backbone's own mean and standard deviation (timm's pretrained config: ImageNet's for ResNets and
DeiT), else :math:`\\mu = \\sigma = 0.5`, which scales to [-1, 1]. Augmentations come from torchvision and timm:

* weak: horizontal flip (where allowed) and a random translation of up to 12.5%;
* strong: weak, then FixMatch's RandAugment and Cutout: 2 of the 14 operations of
  ``RANDAUGMENT_OPS`` (Identity among them), each at a magnitude drawn uniformly from its range
  (rotate up to 30 degrees, shear 0.3, translate 30%, brightness, colour, contrast and sharpness
  x0.1 to x1.9, posterize to 4-8 bits, solarize at any threshold), then one grey square of up to
  half the side erased: Sohn et al. 2020's table 12 in its operations, but with timm's ranges
  (its table gives enhancements of x0.05 to x0.95, and a Cutout size of its own). Until version 0.1 this view ran every
  drawn operation at its strongest (rotate 30 degrees, translate 45%, enhancements x1.9) and
  had no Identity; on the digits' dev half that refined no better (docs/ssl-fixmatch.md).

The operations and Cutout are timm's, at a quarter of torchvision's cost (augmentation is most
of a FixMatch step on small images).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import RandAugment, rand_augment_ops
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from aa_core.config import DataConfig, ModelConfig

# FixMatch's RandAugment operations; "Identity" is ours (timm has none), the rest timm's names
RANDAUGMENT_OPS = [
    "AutoContrast", "Brightness", "Color", "Contrast", "Equalize", "Identity", "PosterizeOriginal",
    "Rotate", "Sharpness", "ShearX", "ShearY", "Solarize", "TranslateXRel", "TranslateYRel",
]  # fmt: skip


class Identity:
    """RandAugment's do-nothing operation: drawing it leaves the image as it is."""

    def __call__(self, image):
        return image


class ToMode:
    """Convert a PIL image to grey ("L") or colour ("RGB")."""

    def __init__(self, channels: int):
        self.mode = "L" if channels == 1 else "RGB"

    def __call__(self, image):
        return image.convert(self.mode)


class Resize:
    """Square ``size``: area averaging when shrinking (as scanners bin pixels), bilinear when growing."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        if image.size == (self.size, self.size):
            return image
        shrinking = image.width * image.height > self.size * self.size
        return image.resize((self.size, self.size), Image.BOX if shrinking else Image.BILINEAR)


class ToScaled:
    """PIL image -> normalised float tensor (C, H, W); ToTensor + Normalize at a third of the cost."""

    def __init__(self, mean: tuple[float, ...] = (0.5,), std: tuple[float, ...] = (0.5,)):
        std_ = torch.tensor(std).view(-1, 1, 1)
        self.scale, self.offset = 1 / (255 * std_), torch.tensor(mean).view(-1, 1, 1) / std_

    def __call__(self, image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.float32)
        tensor = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
        return tensor.mul_(self.scale).sub_(self.offset)


def normalisation(model: ModelConfig | None, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and standard deviation a pretrained backbone was trained with (grey: their average)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model.backbone) if model is not None and model.pretrained and model.backbone else None
    if cfg is None or cfg.mean is None:
        return (0.5,) * channels, (0.5,) * channels
    mean, std = tuple(cfg.mean), tuple(cfg.std)
    return (mean, std) if channels == 3 else ((sum(mean) / 3,), (sum(std) / 3,))


class Plain(T.Compose):
    """The deterministic view: tensor and scale only. ``Views`` computes it once per image."""


class InputFormat:
    """``stats``: the mean and standard deviation to normalise with, where the backbone is not timm's (a VLM's tower)."""

    def __init__(self, data: DataConfig, model: ModelConfig | None = None, stats: tuple[tuple, tuple] | None = None):
        self.mean, self.std = stats or normalisation(model, data.channels)
        self.size = data.image_size
        self.channels = data.channels
        self.flip = data.flip
        self.fill = data.fill if data.channels == 1 else (data.fill,) * 3

    def prepare(self) -> T.Compose:
        """Mode and size: the deterministic part, applied once per image (see ``Prepared``)."""
        return T.Compose([ToMode(self.channels), Resize(self.size)])

    def _to_tensor(self) -> list:
        return [ToScaled(self.mean, self.std)]

    def _weak(self) -> list:
        flip = [T.RandomHorizontalFlip()] if self.flip else []
        return flip + [T.RandomAffine(0, translate=(0.125, 0.125), fill=self.fill)]

    def plain(self) -> Plain:
        return Plain(self._to_tensor())

    def weak(self) -> T.Compose:
        return T.Compose(self._weak() + self._to_tensor())

    def strong(self) -> T.Compose:
        """FixMatch's strong view: weak, RandAugment at random magnitudes, Cutout."""
        hparams = {"img_mean": self.fill, "translate_pct": 0.3, "magnitude_std": float("inf")}
        named = [op for op in RANDAUGMENT_OPS if op != "Identity"]
        ops = rand_augment_ops(magnitude=10, prob=1.0, hparams=hparams, transforms=named) + [Identity()]
        return T.Compose(self._weak() + [RandAugment(ops, num_layers=2), *self._to_tensor(), self._cutout()])

    @staticmethod
    def _cutout() -> RandomErasing:
        # one grey square (0 on the [-1, 1] scale) of up to half the side: up to a quarter of the area
        return RandomErasing(probability=1.0, min_area=0.02, max_area=0.25, min_aspect=1.0, max_aspect=1.0, mode="const", device="cpu")

    VIEWS = ("plain", "weak", "strong")

    def view(self, name: str) -> T.Compose:
        """A named view of a prepared image: one of ``VIEWS``."""
        if name not in self.VIEWS:
            raise ValueError(f"unknown view {name!r}; views are {', '.join(self.VIEWS)}")
        return getattr(self, name)()
