"""The dtype a model runs in: ``auto`` is bfloat16 on a CUDA GPU that has it (Ampere and later:
float32's range, so nothing overflows), float16 on an older one or another accelerator, float32
on the CPU (where half precision is slower, not faster). Generators and vision-language models
choose alike."""

from __future__ import annotations


def auto_dtype(name: str, device):
    """``torch.<name>``, or for ``auto`` the fastest dtype that is safe on ``device``."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.type == "cpu":
        return torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
