"""One accelerate.Accelerator per process: device placement, mixed precision, ``accelerate launch``."""

from __future__ import annotations

from functools import cache


@cache
def get_accelerator(mixed_precision: str = "no"):
    from accelerate import Accelerator

    return Accelerator(mixed_precision=mixed_precision)
