"""Datasets that yield several augmented views of each image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from aa_core.data.input_format import Plain
from aa_core.data.prepared import keeps_plain


class Views(Dataset):
    """Wrap a dataset of PIL images (or ``(image, label)`` pairs) into augmented views.

    Items are ``view`` for one view of an unlabelled image, else ``(view_1, ..., view_n[, label])``.
    Plain views are deterministic: where they fit ``data.cache_mb`` (small images,
    ``Prepared.keep_plain``) each is computed once and kept, since converting thousands of tiny
    images on every step would cost more than training on them; otherwise at each access.
    """

    def __init__(self, base: Dataset, transforms: Sequence, labels: Sequence[int] | None = None):
        self.base = base
        self.transforms = list(transforms)
        self.labels = labels
        self._plain: dict[tuple[int, int], torch.Tensor] | None = {} if keeps_plain(base) else None

    def __len__(self) -> int:
        return len(self.base)

    @property
    def deterministic(self) -> bool:
        """Whether every view is the plain one: a pass over it needs no random numbers."""
        return all(isinstance(t, Plain) for t in self.transforms)

    def __getitem__(self, index: int):
        image = None  # read from the base only when a view needs it: kept plain views do not
        views = []
        for k, transform in enumerate(self.transforms):
            kept = self._plain is not None and isinstance(transform, Plain)
            if kept and (index, k) in self._plain:
                views.append(self._plain[index, k])
                continue
            if image is None:
                item = self.base[index]
                image = item[0] if isinstance(item, tuple) else item
            views.append(transform(image))
            if kept:
                self._plain[index, k] = views[-1]
        if self.labels is not None:
            return (*views, int(self.labels[index]))
        return views[0] if len(views) == 1 else tuple(views)
