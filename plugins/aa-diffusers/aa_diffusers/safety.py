"""Which images a pipeline withheld: its own verdict where it gives one, black pixels where not.

Stable Diffusion 1.x/2.x (and the pipelines built on its checker) return
``nsfw_content_detected``, one flag per image, and black out the flagged ones; DeepFloyd IF
returns ``nsfw_detected``. That flag is the verdict. A pipeline that reports none (SDXL, SD3,
Flux, or any with its checker off) withholds nothing we can see, except that a checker of its own
may black an image out, so there an all-black image counts as withheld. A NaN image is not
black: ``precision.check_finite`` has refused it before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VERDICTS = ("nsfw_content_detected", "nsfw_detected")  # the output fields pipelines report them in


def withheld(output, pixels: Sequence[np.ndarray]) -> list[bool]:
    """Per image (uint8 pixels), whether the pipeline withheld it."""
    for field in VERDICTS:
        flags = getattr(output, field, None)
        if flags is not None:
            return [bool(flag) for flag in flags]
    return [not image.any() for image in pixels]
