"""stable-diffusion: the synthetic source from any diffusers text-to-image pipeline.

``generator.model`` is a Hugging Face hub id or a local folder holding ``model_index.json``;
``AutoPipelineForText2Image`` picks the pipeline class it names (Stable Diffusion 1.x and 2.x,
SDXL, the turbo variants, SD3, PixArt, Flux, ...). The pipeline is loaded once per process and
released when the stage ends, so adaptation does not share the GPU with an idle UNet.

In order: load (safetensors only unless ``allow_pickle``; dtype, variant, revision; the scheduler
swapped by class name; memory savers) -> the call's arguments, from the options set and named by
the pipeline's ``__call__`` (``call_arguments``: steps and guidance default to the pipeline's
own) -> per batch, one ``torch.Generator`` per image seeded with that image's seed, so an image
is the same whatever batch it falls in and is regenerated exactly from its metadata row -> the
pipeline's own ``__call__`` (encode prompts -> denoise -> decode), read back as floats: a NaN is
an error naming the dtype (``precision``) -> 8-bit pixels, exactly as the pipeline's own PIL
output -> ``None`` for each image the pipeline withheld (``safety``), which the stage makes again
with a derived seed.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL.Image import Image
from pydantic import Field

from aa_core.api import AAError, GeneratorContext, ImageGenerator, Options, auto_dtype
from aa_diffusers.call_arguments import call_arguments
from aa_diffusers.precision import check_finite
from aa_diffusers.safety import withheld

logger = logging.getLogger("aa")

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the paper's generator


class StableDiffusionOptions(Options):
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) of generator.model")
    variant: str | None = Field(None, description='weights variant, e.g. "fp16" (smaller downloads)')
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that has it, else float16; float32 on the CPU"
    )
    scheduler: str | None = Field(None, description="a diffusers scheduler class name (EulerDiscreteScheduler, ...); none: the model's")
    steps: int | None = Field(None, ge=1, description="denoising steps; none: the pipeline's own (turbo models: 1 to 4)")
    guidance_scale: float | None = Field(None, ge=0, description="classifier-free guidance; none: the pipeline's own (turbo: 0)")
    negative_prompt: str | None = Field(None, description="what every image should not show")
    height: int | None = Field(None, ge=8, description="pixels; none: the model's default")
    width: int | None = Field(None, ge=8, description="pixels; none: the model's default")
    safety_checker: bool = Field(True, description="false loads the pipeline without its safety checker")
    allow_pickle: bool = Field(False, description="true also loads pickled weights (.bin), which can run code: trusted sources only")
    attention_slicing: bool = Field(False, description="attention in slices: less memory, a little slower")
    vae_slicing: bool = Field(False, description="decode the batch one image at a time")
    vae_tiling: bool = Field(False, description="decode each image in tiles (large images)")
    cpu_offload: bool = Field(False, description="keep each model on the CPU until it runs (accelerators only)")
    compile: bool = Field(False, description="torch.compile the denoiser (CUDA only; pays off over thousands of images)")


class StableDiffusionGenerator(ImageGenerator):
    """Images from a diffusers text-to-image pipeline, one seeded ``torch.Generator`` per image."""

    Options = StableDiffusionOptions
    # never change a pixel: memory and speed, and which files may load (the same weights either way)
    speed_options = frozenset({"attention_slicing", "vae_slicing", "vae_tiling", "cpu_offload", "compile", "allow_pickle"})
    reports_withheld = True  # None in place of each image the pipeline withheld, by its verdict or black pixels (``safety``)

    def __init__(self, options: StableDiffusionOptions, context: GeneratorContext):
        super().__init__(options, context)
        import torch

        self.device = torch.device(context.device or "cpu")
        self.model = context.model or DEFAULT_MODEL
        self.dtype = auto_dtype(options.dtype, self.device)
        self.pipe = load_pipeline(self.model, options, self.dtype)
        if options.scheduler:
            self.pipe.scheduler = scheduler_named(options.scheduler, self.pipe.scheduler.config)
        self.arguments = call_arguments(self.pipe, options)
        self.save_memory(options)
        self.pipe.set_progress_bar_config(disable=True)  # the stage's bar counts images

    def save_memory(self, o: StableDiffusionOptions) -> None:
        import torch

        pipe, accelerator = self.pipe, self.device.type != "cpu"
        if o.attention_slicing:
            pipe.enable_attention_slicing()
        if o.vae_slicing:
            pipe.vae.enable_slicing()
        if o.vae_tiling:
            pipe.vae.enable_tiling()
        if o.cpu_offload and accelerator:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            if o.cpu_offload:
                logger.warning("generator.cpu_offload needs an accelerator; the pipeline stays on the CPU")
            pipe.to(self.device)
        if o.compile:
            if self.device.type != "cuda":
                logger.warning("generator.compile pays off on CUDA only; the denoiser runs uncompiled on %s", self.device.type)
            else:
                name = "unet" if getattr(pipe, "unet", None) is not None else "transformer"
                setattr(pipe, name, torch.compile(getattr(pipe, name), fullgraph=True))

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image | None]:
        import torch
        from diffusers.image_processor import VaeImageProcessor

        kwargs = dict(self.arguments)
        if "negative_prompt" in kwargs:
            kwargs["negative_prompt"] = [kwargs["negative_prompt"]] * len(prompts)
        # CPU generators: the same latents on every machine, as diffusers recommends for reproducibility
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        with torch.inference_mode():
            output = self.pipe(prompt=list(prompts), generator=generators, output_type="np", **kwargs)
        floats = np.asarray(output.images)
        check_finite(floats, self.dtype)
        images = VaeImageProcessor.numpy_to_pil(floats)  # what output_type="pil" returns, pixel for pixel
        held = withheld(output, [np.asarray(image) for image in images])
        return [None if hold else image for image, hold in zip(images, held)]

    def close(self) -> None:
        import torch

        if getattr(self, "pipe", None) is not None:
            self.pipe.maybe_free_model_hooks()
            self.pipe = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_pipeline(model: str, o: StableDiffusionOptions, dtype):
    """``AutoPipelineForText2Image.from_pretrained`` with the options; a failure is one line."""
    from diffusers import AutoPipelineForText2Image

    # None: safetensors where there are any, pickles otherwise (diffusers' default)
    kwargs = {"dtype": dtype, "revision": o.revision, "variant": o.variant, "use_safetensors": None if o.allow_pickle else True}
    try:
        # off only where the pipeline has one: others warn about an argument they do not expect
        if not o.safety_checker and "safety_checker" in AutoPipelineForText2Image.load_config(model, revision=o.revision):
            kwargs |= {"safety_checker": None, "requires_safety_checker": False}
        return AutoPipelineForText2Image.from_pretrained(model, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        if "safetensors" in reason and not o.allow_pickle:
            fix = ("its weights are not in safetensors files; if they are pickled (.bin) and you trust their source, "
                   "set generator.allow_pickle=true")  # fmt: skip
        else:
            fix = ("set generator.model to a local folder with model_index.json, or to a hub id this machine can download "
                   "(or has in its Hugging Face cache)")  # fmt: skip
        raise AAError(f"cannot load the diffusers pipeline '{model}': {reason}; {fix}") from None


def scheduler_named(name: str, config):
    """The diffusers scheduler class ``name``, configured like the pipeline's own."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise AAError(f"generator.scheduler '{name}' is not a diffusers scheduler; name a class such as EulerDiscreteScheduler")
    return cls.from_config(config)
