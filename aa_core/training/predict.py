"""Class probabilities for every image of a dataset, in order.

A pass over deterministic views (``Views.deterministic``) draws nothing from the global random
stream: evaluating a model (choosing a checkpoint, the split's plain view) never shifts the
training around it. A pass over random views draws them from it, as any data loader does.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from aa_core.training.progress import progress_bar


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, dataset, accelerator, batch_size: int = 256, num_workers: int = 0) -> torch.Tensor:
    """Softmax probabilities (N, K) on the CPU, in the dataset's order; the images stream through
    ``num_workers`` loader workers, and only the N x K result is held."""
    own = torch.Generator() if getattr(dataset, "deterministic", False) else None  # the loader's seed, drawn from its own
    pin = accelerator.device.type == "cuda"
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=own, num_workers=num_workers, pin_memory=pin)
    loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    out = []
    for x in progress_bar(loader, desc="predict", disable=not accelerator.is_local_main_process):
        out.append(accelerator.gather_for_metrics(model(x).float().softmax(dim=1)).cpu())  # N x K held on the host
    model.train(was_training)
    return torch.cat(out)
