"""Model weights in safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from aa_core.errors import AAError


def save_weights(model: torch.nn.Module, path: Path, accelerator) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = path.with_name(f".{path.name}")
        save_model(accelerator.unwrap_model(model), str(tmp))
        tmp.replace(path)
    accelerator.wait_for_everyone()


def load_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    try:
        load_model(model, str(path))
    except RuntimeError as exc:  # the network changed shape since: another release, or edited settings
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise AAError(
            f"the weights in {path} do not fit the network this version builds ({first}); "
            f"run `aa run --out {path.parent}` again to retrain what changed"
        ) from None
    return model
