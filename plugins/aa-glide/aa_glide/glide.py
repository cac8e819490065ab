"""glide: OpenAI's GLIDE (the released, filtered model), the paper's ablation generator.

Sampling, in order, as GLIDE's own text-to-image notebook does it:

1. **Base model, 64x64, classifier-free guidance.** Each prompt's tokens and the empty prompt's
   go through the model together; the noise prediction is

   .. math:: \\hat\\epsilon = \\epsilon(x_t, \\varnothing) + s\\,\\big(\\epsilon(x_t, c) - \\epsilon(x_t, \\varnothing)\\big)

   with guidance scale :math:`s` (``guidance_scale``, 3). Ancestral sampling over ``steps``
   respaced steps: :math:`x_{t-1} = \\mu_\\theta(x_t) + \\sigma_t z` with :math:`z` drawn from
   each image's own generator, so an image does not depend on its batch.
2. **Upsampler, 64 -> 256.** Conditioned on the 64x64 sample (rounded to 8 bits) and the
   prompt, DDIM over ``upsample_steps`` ("fast27") from noise scaled by ``upsample_temp`` (0.997).

``generator.model`` is empty for the released checkpoints (``base.pt``, ``upsample.pt``, downloaded
once into the machine's cache and checked), or a folder holding ``base.pt`` (and ``upsample.pt``),
each with an optional ``base.json`` / ``upsample.json`` of options over GLIDE's
``model_and_diffusion_defaults``. Both end the same way (``checkpoints.py``): weights-only
``torch.load``, which runs no code, and ``load_state_dict`` into the model those options build.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Literal

from PIL import Image
from pydantic import ConfigDict, Field

from aa_core.api import AAError, GeneratorContext, ImageGenerator, Options
from aa_glide.checkpoints import Checkpoints

INSTALL = 'pip install "glide-text2im @ git+https://github.com/openai/glide-text2im"'


class GlideOptions(Options):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)  # steps=100 on the command line is "100"
    guidance_scale: float = Field(3.0, ge=0, description="classifier-free guidance of the base model")
    steps: str = Field("100", description="the base model's timestep respacing: a count ('100') or GLIDE's 'fastNN'")
    upsample: bool = Field(True, description="run the 64->256 upsampler; false: 64x64 images")
    upsample_steps: str = Field("fast27", description="the upsampler's timestep respacing")
    upsample_temp: float = Field(0.997, gt=0, description="scale of the upsampler's starting noise")
    fp16: Literal["auto", "true", "false"] = Field("auto", description="half precision; auto: on CUDA")


class GlideGenerator(ImageGenerator):
    """GLIDE's base model with classifier-free guidance, then its upsampler."""

    Options = GlideOptions

    def __init__(self, options: GlideOptions, context: GeneratorContext):
        super().__init__(options, context)
        import torch

        try:
            import glide_text2im  # noqa: F401
        except ImportError:
            raise AAError(f"generator 'glide' needs the glide-text2im package, which is not on PyPI; install it with: {INSTALL}") from None
        from glide_text2im.model_creation import model_and_diffusion_defaults, model_and_diffusion_defaults_upsampler

        self.device = torch.device(context.device or "cpu")
        fp16 = options.fp16 == "true" or (options.fp16 == "auto" and self.device.type == "cuda")
        self.checkpoints = Checkpoints(context.model, context.cache_dir / "glide" if context.cache_dir else None)
        load = self.checkpoints.load
        self.base, self.diffusion, self.base_options = load("base", model_and_diffusion_defaults(), options.steps, fp16, self.device)
        self.up = None
        if options.upsample:
            defaults = model_and_diffusion_defaults_upsampler()
            self.up, self.up_diffusion, self.up_options = load("upsample", defaults, options.upsample_steps, fp16, self.device)

    def tokens(self, model, prompts: Sequence[str], text_ctx: int):
        import torch

        pairs = [model.tokenizer.padded_tokens_and_mask(model.tokenizer.encode(p), text_ctx) for p in prompts]
        tokens = torch.tensor([t for t, _ in pairs], device=self.device)
        mask = torch.tensor([m for _, m in pairs], dtype=torch.bool, device=self.device)
        return tokens, mask

    def generate(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        import torch

        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        with torch.inference_mode():
            samples = self.sample_base(list(prompts), generators)
            if self.up is not None:
                samples = self.upsample(list(prompts), samples, generators)
        pixels = ((samples + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(p) for p in pixels]

    def noise(self, generators, shape):
        """One draw per image from its own generator, stacked: (len(generators), *shape)."""
        import torch

        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)

    def sample_base(self, prompts: list[str], generators):
        import torch

        n, ctx, size = len(prompts), self.base_options["text_ctx"], self.base_options["image_size"]
        tokens, mask = self.tokens(self.base, prompts + [""] * n, ctx)  # conditional half, then unconditional
        scale = self.options.guidance_scale

        def guided(x_t, ts, **kwargs):
            half = x_t[: len(x_t) // 2]
            out = self.base(torch.cat([half, half]), ts, **kwargs)
            eps, rest = out[:, :3], out[:, 3:]
            cond, uncond = torch.split(eps, len(eps) // 2)
            eps = uncond + scale * (cond - uncond)
            return torch.cat([torch.cat([eps, eps]), rest], dim=1)

        diffusion = self.diffusion
        x = self.noise(generators, (3, size, size))
        self.base.del_cache()
        for i in reversed(range(diffusion.num_timesteps)):
            t = torch.full((2 * n,), i, device=self.device, dtype=torch.long)
            out = diffusion.p_mean_variance(guided, torch.cat([x, x]), t, clip_denoised=True, model_kwargs={"tokens": tokens, "mask": mask})
            mean, log_variance = out["mean"][:n], out["log_variance"][:n]
            x = mean + torch.exp(0.5 * log_variance) * self.noise(generators, (3, size, size)) if i > 0 else mean  # no noise at t=0
        self.base.del_cache()
        return x

    def upsample(self, prompts: list[str], low_res, generators):
        ctx, size = self.up_options["text_ctx"], self.up_options["image_size"]
        tokens, mask = self.tokens(self.up, prompts, ctx)
        kwargs = {"low_res": ((low_res + 1) * 127.5).round() / 127.5 - 1, "tokens": tokens, "mask": mask}
        noise = self.noise(generators, (3, size, size)) * self.options.upsample_temp
        self.up.del_cache()
        out = self.up_diffusion.ddim_sample_loop(
            self.up, noise.shape, noise=noise, device=self.device, clip_denoised=True, progress=False, model_kwargs=kwargs
        )
        self.up.del_cache()
        return out

    def close(self) -> None:
        import torch

        self.base = self.up = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
