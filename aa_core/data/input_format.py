"""One input format for every image, and the augmentations built on it.

Source and target images differ in size and mode (a 512x512 RGB render, an 8x8 grey scan); each
is converted to ``channels`` and resized to ``image_size`` square once (``prepare``), then viewed
plainly or augmented, and scaled to [-1, 1]. Augmentations come from torchvision:

* weak: horizontal flip (where allowed) and a random translation of up to 12.5%;
* strong: weak, then RandAugment (2 ops, magnitude 10) and Cutout (a random square erased).
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms as T

from aa_core.config import DataConfig


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
        return [T.ToTensor(), T.Normalize([0.5] * self.channels, [0.5] * self.channels)]

    def _weak(self) -> list:
        flip = [T.RandomHorizontalFlip()] if self.flip else []
        return flip + [T.RandomAffine(0, translate=(0.125, 0.125), fill=self.fill)]

    def plain(self) -> T.Compose:
        return T.Compose(self._to_tensor())

    def weak(self) -> T.Compose:
        return T.Compose(self._weak() + self._to_tensor())

    def strong(self) -> T.Compose:
        cutout = T.RandomErasing(p=1.0, scale=(0.05, 0.25), ratio=(1.0, 1.0), value=self.data_fill())
        return T.Compose(
            self._weak()
            + [T.RandAugment(num_ops=2, magnitude=10, fill=self.fill), T.ToTensor(), cutout]
            + self._to_tensor()[1:]
        )

    def data_fill(self) -> float:
        """The background value on ToTensor's [0, 1] scale."""
        fill = self.fill if isinstance(self.fill, int) else self.fill[0]
        return fill / 255

    def view(self, name: str) -> T.Compose:
        """A named view of a prepared image: "plain", "weak" or "strong"."""
        try:
            return {"plain": self.plain, "weak": self.weak, "strong": self.strong}[name]()
        except KeyError:
            raise ValueError(f"unknown view {name!r}; views are plain, weak and strong") from None
