"""Images read from their files and brought to the input format (mode and size), with memory
that does not grow with the data set.

Decoding and resizing dominate the cost of small images, and every training step revisits the
same ones. So when the whole set, prepared, fits ``data.cache_mb`` (the digits' 1,797 8x8 images
take 115 KB), it is decoded once, by the data-loader workers, into one uint8 array that every
later pass reads (workers forked after it share its pages). A set that does not fit (55,000
224-px images would take 8.3 GB) is decoded from its files at each access instead, by the
workers, so that memory is bounded by the setting and the loaders' queues, not by the data set.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import default_loader


class Decoded(Dataset):
    """``prepare(image)`` of each file, as a uint8 array (H, W[, C]): what the cache is filled with."""

    def __init__(self, paths: list[str], prepare):
        self.paths, self.prepare = paths, prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.prepare(default_loader(self.paths[index])))


class Prepared(Dataset):
    """``self[i]``: the PIL image of file ``paths[i]`` in the input format; ``cached`` when held in memory."""

    def __init__(self, paths: list[str], prepare, size: int, channels: int, cache_bytes: int, num_workers: int = 0):
        self.paths, self.prepare = list(paths), prepare
        self.mode = "L" if channels == 1 else "RGB"
        shape = (size, size) if channels == 1 else (size, size, channels)
        values = len(self.paths) * int(np.prod(shape))
        self.cached = values <= cache_bytes
        self.keep_plain = 4 * values <= cache_bytes  # the plain views too (float32): ``Views`` keeps them
        self.array: np.ndarray | None = None
        self.images: list[Image.Image] = []
        if self.cached:
            self.array = np.empty((len(self.paths), *shape), dtype=np.uint8)
            decoded = Decoded(self.paths, prepare)  # no random draw: its loader seeds itself, not from the training's stream
            loader = DataLoader(decoded, batch_size=256, num_workers=num_workers, collate_fn=np.stack, generator=torch.Generator())
            start = 0
            for batch in loader:  # streamed: the workers decode while the array fills
                self.array[start : start + len(batch)] = batch
                start += len(batch)
            # one PIL image over each row, sharing its memory: handed out as they are, at no cost per access
            self.images = [Image.frombuffer(self.mode, (size, size), row, "raw", self.mode, 0, 1) for row in self.array]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        if self.images:
            return self.images[index]
        return self.prepare(default_loader(self.paths[index]))


def keeps_plain(dataset: Dataset) -> bool:
    """Whether the plain views of ``dataset`` (a list of images, a ``Prepared``, or a ``Subset`` of
    one) may be kept in memory: they fit ``data.cache_mb`` as float32 tensors."""
    if isinstance(dataset, (list, tuple)):
        return True
    return bool(getattr(dataset, "keep_plain", False) or getattr(getattr(dataset, "dataset", None), "keep_plain", False))
