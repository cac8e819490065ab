"""The dtype a pipeline runs in, and the check that it did not overflow.

``auto`` is ``aa_core.api.auto_dtype``'s: bfloat16 on a CUDA GPU that has it, float16 on an older
one or another accelerator, float32 on the CPU. float16 tops out
at 65504: some models (Flux, SDXL's VAE) overflow it, the overflow turns into NaN, and NaN
decodes to a black image that looks like a safety checker's. The images are read as floats
before they are turned into pixels, so that a NaN is an error naming the dtype to use instead.
"""

from __future__ import annotations

import numpy as np

from aa_core.api import AAError


def check_finite(images: np.ndarray, dtype) -> None:
    """Raise when any pixel is NaN or infinite, naming the dtype that avoids it."""
    if np.isfinite(images).all():
        return
    name = str(dtype).removeprefix("torch.")
    if name == "float32":
        fix = "the model itself is broken in float32; check generator.model (and generator.scheduler)"
    else:
        fix = f"{name} overflows in this model; set generator.dtype={'float32' if name == 'bfloat16' else 'bfloat16 (or float32)'}"
    raise AAError(f"the pipeline made non-finite pixels (NaN) in {name}: {fix}")
