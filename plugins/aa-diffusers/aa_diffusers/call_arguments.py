"""What a pipeline is called with: the options set, those its ``__call__`` names, nothing else.

Pipelines differ in what they take: LCM and FLUX.2 take no ``negative_prompt``, Stable Cascade
no ``guidance_scale``; and in their defaults: 50 steps and guidance 7.5 for SD 1.5, 28 and 3.5
for Flux, 4 and 8.5 for LCM. An option left unset is not passed, so the pipeline's own default
holds; an option set that the pipeline does not name is left out with one warning. A ``**kwargs``
in the signature does not count as taking an option: diffusers uses it for deprecated callbacks
and drops the rest silently.
"""

from __future__ import annotations

import inspect
import logging

from aa_core.api import AAError

logger = logging.getLogger("aa")

# option of generator.* -> the __call__ argument it sets
ARGUMENTS = {"steps": "num_inference_steps", "guidance_scale": "guidance_scale", "negative_prompt": "negative_prompt",
             "height": "height", "width": "width"}  # fmt: skip
NEEDED = ("prompt", "generator", "output_type")  # a seeded text-to-image call, read back as floats


def call_arguments(pipe, options) -> dict:
    """The keyword arguments for ``pipe`` from the options that are set; warns once about the rest."""
    name = type(pipe).__name__
    named = inspect.signature(type(pipe).__call__).parameters
    missing = [argument for argument in NEEDED if argument not in named]
    if missing:
        raise AAError(f"{name} takes no {', '.join(missing)}: it is not a seeded text-to-image pipeline; choose another generator.model")
    chosen = {option: getattr(options, option) for option in ARGUMENTS if getattr(options, option) is not None}
    ignored = [option for option in chosen if ARGUMENTS[option] not in named]
    if ignored:
        arguments = ", ".join(ARGUMENTS[option] for option in ignored)
        settings = ", ".join(f"generator.{option}" for option in ignored)
        logger.warning("%s takes no %s: %s ignored", name, arguments, settings)
    return {ARGUMENTS[option]: value for option, value in chosen.items() if option not in ignored}
