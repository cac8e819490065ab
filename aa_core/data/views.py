"""Datasets that yield several augmented views of each image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from aa_core.data.input_format import Plain


class Views(Dataset):
    """Wrap a dataset of PIL images (or ``(image, label)`` pairs) into augmented views.

    Items are ``view`` for one view of an unlabelled image, else ``(view_1, ..., view_n[, label])``.
    Plain views are deterministic and computed once per image: converting thousands of tiny
    images on every step would cost more than training on them.
    """

    def __init__(self, base: Dataset, transforms: Sequence, labels: Sequence[int] | None = None):
        self.base = base
        self.transforms = list(transforms)
        self.labels = labels
        self._plain: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.base)

    @property
    def deterministic(self) -> bool:
        """Whether every view is the plain one: a pass over it needs no random numbers."""
        return all(isinstance(t, Plain) for t in self.transforms)

    def __getitem__(self, index: int):
        item = self.base[index]
        image = item[0] if isinstance(item, tuple) else item
        views = tuple(self._view(k, t, index, image) for k, t in enumerate(self.transforms))
        if self.labels is not None:
            return (*views, int(self.labels[index]))
        return views[0] if len(views) == 1 else views

    def _view(self, k: int, transform, index: int, image):
        if not isinstance(transform, Plain):
            return transform(image)
        if (index, k) not in self._plain:
            self._plain[index, k] = transform(image)
        return self._plain[index, k]
