"""One input format for every image, and the augmentations built on it.

Source and target images differ in size and mode (a 512x512 RGB render, an 8x8 grey scan); each
is converted to ``channels`` and resized to ``image_size`` square once (``prepare``), then viewed
plainly or augmented, and scaled to [-1, 1]. Augmentations come from torchvision and timm:

* weak: horizontal flip (where allowed) and a random translation of up to 12.5%;
* strong: weak, then RandAugment (2 ops, magnitude 10) and Cutout (a random square erased).

RandAugment and Cutout are timm's: RandAugment with the paper's operations (``RANDAUGMENT_OPS``),
each applied whenever drawn, as torchvision's, at a quarter of its cost (augmentation is most of
a FixMatch step on small images).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import RandAugment, rand_augment_ops
from timm.data.random_erasing import RandomErasing
from torchvision import transforms as T

from aa_core.config import DataConfig

# RandAugment's operations (Cubuk et al. 2020) but Identity
RANDAUGMENT_OPS = [
    "AutoContrast", "Equalize", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
]  # fmt: skip


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
    """PIL image -> float tensor (C, H, W) on [-1, 1]; ToTensor + Normalize at a third of the cost."""

    def __call__(self, image) -> torch.Tensor:
        array = np.asarray(image, dtype=np.float32)
        tensor = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
        return tensor.mul_(2 / 255).sub_(1)


class Plain(T.Compose):
    """The deterministic view: tensor and scale only. ``Views`` computes it once per image."""


class InputFormat:
    def __init__(self, data: DataConfig):
        self.size = data.image_size
        self.channels = data.channels
        self.flip = data.flip
        self.fill = data.fill if data.channels == 1 else (data.fill,) * 3

    def prepare(self) -> T.Compose:
        """Mode and size: the deterministic part, applied once per image (see ``Prepared``)."""
        return T.Compose([ToMode(self.channels), Resize(self.size)])

    def _to_tensor(self) -> list:
        return [ToScaled()]

    def _weak(self) -> list:
        flip = [T.RandomHorizontalFlip()] if self.flip else []
        return flip + [T.RandomAffine(0, translate=(0.125, 0.125), fill=self.fill)]

    def plain(self) -> Plain:
        return Plain(self._to_tensor())

    def weak(self) -> T.Compose:
        return T.Compose(self._weak() + self._to_tensor())

    def strong(self) -> T.Compose:
        # Cutout: one grey square, as FixMatch's (grey is 0 on the [-1, 1] scale)
        cutout = RandomErasing(probability=1.0, min_area=0.05, max_area=0.25, min_aspect=1.0, max_aspect=1.0, mode="const", device="cpu")
        return T.Compose(self._weak() + [self._rand_augment(), *self._to_tensor(), cutout])

    def _rand_augment(self) -> RandAugment:
        ops = rand_augment_ops(magnitude=10, prob=1.0, hparams={"img_mean": self.fill}, transforms=RANDAUGMENT_OPS)
        return RandAugment(ops, num_layers=2)

    def view(self, name: str) -> T.Compose:
        """A named view of a prepared image: "plain", "weak" or "strong"."""
        try:
            return {"plain": self.plain, "weak": self.weak, "strong": self.strong}[name]()
        except KeyError:
            raise ValueError(f"unknown view {name!r}; views are plain, weak and strong") from None
