"""Class probabilities for every image of a dataset, in order."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from aa_core.training.progress import progress_bar


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, dataset, accelerator, batch_size: int = 256) -> torch.Tensor:
    loader = accelerator.prepare_data_loader(DataLoader(dataset, batch_size=batch_size, shuffle=False))
    was_training = model.training
    model.eval()
    out = []
    for x in progress_bar(loader, desc="predict", disable=not accelerator.is_local_main_process):
        out.append(accelerator.gather_for_metrics(model(x).float().softmax(dim=1)))
    model.train(was_training)
    return torch.cat(out).cpu()
