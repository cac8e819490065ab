"""Images brought to the input format once and kept in memory.

Decoding and resizing dominate the cost of small images, and every training step revisits the
same ones; augmentation then works on the small prepared image.
"""

from __future__ import annotations

from torch.utils.data import Dataset


class Prepared(Dataset):
    """``base[i]`` (an image, or an ``(image, label)`` pair) -> ``prepare(image)``, cached."""

    def __init__(self, base: Dataset, prepare):
        self.base = base
        self.prepare = prepare
        self._cache: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        if index not in self._cache:
            item = self.base[index]
            self._cache[index] = self.prepare(item[0] if isinstance(item, tuple) else item)
        return self._cache[index]
