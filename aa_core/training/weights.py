"""Model weights in safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model, save_model


def save_weights(model: torch.nn.Module, path: Path, accelerator) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = path.with_name(f".{path.name}")
        save_model(accelerator.unwrap_model(model), str(tmp))
        tmp.replace(path)
    accelerator.wait_for_everyone()


def load_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    load_model(model, str(path))
    return model
