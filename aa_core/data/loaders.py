"""Batches for training algorithms: endless and shuffled, or one ordered pass (``contracts.Loaders``)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from aa_core.errors import AAError


class Indexed(Dataset):
    """``(index, *item)`` for each item of ``base``: lets an algorithm map a batch back to images."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        item = self.base[index]
        return (index, *item) if isinstance(item, tuple) else (index, item)


class Loaders:
    """``loaders(dataset, batch_size)``: shuffled batches for ever, sharded over processes by accelerate.

    Every call starts from the same seed, so two loaders over datasets of one size draw the same
    order; pass a ``sampler`` (a ``torch.utils.data.Sampler``) to choose the order yourself.
    """

    def __init__(self, accelerator, seed: int, num_workers: int = 0):
        self.accelerator = accelerator
        self.seed = seed
        self.num_workers = num_workers

    def __call__(self, dataset: Dataset, batch_size: int, *, sampler=None, indices: bool = False) -> Iterator:
        if len(dataset) == 0:
            raise AAError("a training set is empty; check the source and target folders")
        loader = DataLoader(
            Indexed(dataset) if indices else dataset,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            # a short last batch is dropped only while every process still gets a whole one
            drop_last=len(dataset) >= batch_size * self.accelerator.num_processes,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,  # the workers (and what they hold) live as long as the loader
            pin_memory=self.accelerator.device.type == "cuda",
        )
        loader = self.accelerator.prepare_data_loader(loader)
        while True:
            drawn = 0
            for batch in loader:
                drawn += 1
                yield batch
            if not drawn:  # looping on would spin for ever while the other processes wait
                raise AAError(f"a training set of {len(dataset)} images gives this process no batch of {batch_size}")

    def once(self, dataset: Dataset, batch_size: int, *, indices: bool = False) -> Iterator:
        """The whole dataset once, in order, on this process's device (not sharded)."""
        pin = self.accelerator.device.type == "cuda"
        loader = DataLoader(Indexed(dataset) if indices else dataset, batch_size=batch_size, num_workers=self.num_workers, pin_memory=pin)
        device = self.accelerator.device
        for batch in loader:
            yield [x.to(device) for x in batch] if isinstance(batch, (list, tuple)) else batch.to(device)
