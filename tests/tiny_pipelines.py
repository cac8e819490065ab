"""The pipeline matrix: tiny, randomly initialised SDXL, SD3, Flux and LCM pipelines, built here
(tokenizers included, nothing downloaded) the way diffusers' own tests build their dummy
components, and saved with ``save_pretrained`` so that ``AutoPipelineForText2Image.from_pretrained``
loads them as it loads the published models. The SD 1.5 member is ``tiny_models.tiny_stable_diffusion``.

Every member makes 64x64 images from an 8x8 latent (a 4-block VAE, scale factor 8), except SD 1.5
(a 2-block VAE) and Flux, whose pipeline defaults to 1024 pixels: ask Flux for 64x64.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch
from tiny_models import clip_tokenizer, tiny_clip_config, tiny_stable_diffusion

SIZE = 64  # pixels of every image the matrix makes


def t5_tokenizer():
    """A T5 tokenizer: a Unigram model over single characters, with T5's fixed ids (``<pad>`` 0,
    ``</s>`` 1, ``<unk>`` 2), which is what ``T5Tokenizer`` assumes when it reloads one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5Tokenizer

    chars = [chr(c) for c in range(32, 127)] + ["\u2581"]  # printable ASCII and the word-start mark
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -math.log(len(chars))) for c in chars]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return T5Tokenizer(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)


def clip_text_config():
    """The tiny CLIP text encoder's config, its projection (SDXL, SD3) 32 wide."""
    text = tiny_clip_config().text_config
    text.projection_dim = 32
    return text


def t5_encoder(d_model: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=128, d_model=d_model, d_ff=37, d_kv=8, num_layers=1, num_heads=4, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config)


def vae(latent_channels: int = 4, **extra):
    """A 4-block VAE: scale factor 8, so a 64x64 image is an 8x8 latent."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, sample_size=SIZE, **extra,
    )  # fmt: skip


def saved(pipe, path: Path) -> Path:
    pipe.save_pretrained(path)
    shutil.rmtree(path / "tokenizer-src", ignore_errors=True)
    return path


def tiny_sdxl(path: Path) -> Path:
    """SDXL: two CLIP text encoders (the second with a projection) feeding a UNet whose added
    conditioning is the pooled text (32) and six size numbers of 8 each (80 in all)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    text = clip_text_config()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
    )  # fmt: skip
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                       timestep_spacing="leading")  # fmt: skip
    tokenizer = clip_tokenizer(path / "tokenizer-src")
    pipe = StableDiffusionXLPipeline(
        vae=vae(), unet=unet, scheduler=scheduler, text_encoder=CLIPTextModel(text), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(text), tokenizer_2=tokenizer,
    )  # fmt: skip
    return saved(pipe, path)


def tiny_sd3(path: Path) -> Path:
    """SD3: two CLIP encoders with projections (pooled: 32 + 32) and a T5 whose width (64) holds
    both CLIP outputs side by side, into an MMDiT transformer; flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    text = clip_text_config()
    transformer = SD3Transformer2DModel(
        sample_size=SIZE // 8, patch_size=1, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64,
    )  # fmt: skip
    tokenizer = clip_tokenizer(path / "tokenizer-src")
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModelWithProjection(text), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(text), tokenizer_2=tokenizer,
        text_encoder_3=t5_encoder(64), tokenizer_3=t5_tokenizer(),
    )  # fmt: skip
    return saved(pipe, path)


def tiny_flux(path: Path) -> Path:
    """Flux (as FLUX.1-dev, guidance embedded): CLIP's pooled text and T5's tokens into a
    transformer over 2x2 patches of a 1-channel latent; flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True,
    )  # fmt: skip
    pipe = FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae(latent_channels=1, shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModel(clip_text_config()), tokenizer=clip_tokenizer(path / "tokenizer-src"),
        text_encoder_2=t5_encoder(32), tokenizer_2=t5_tokenizer(),
    )  # fmt: skip
    return saved(pipe, path)


def tiny_lcm(path: Path) -> Path:
    """A latent consistency model: SD 1.5's components with the guidance scale embedded in the
    UNet's time embedding; its pipeline takes no ``negative_prompt`` and defaults to 4 steps."""
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, time_cond_proj_dim=32,
    )  # fmt: skip
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = LatentConsistencyModelPipeline(
        vae=vae(), unet=unet, scheduler=scheduler, text_encoder=CLIPTextModel(clip_text_config()),
        tokenizer=clip_tokenizer(path / "tokenizer-src"), safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    return saved(pipe, path)


FAMILIES = {"sd15": tiny_stable_diffusion, "sdxl": tiny_sdxl, "sd3": tiny_sd3, "flux": tiny_flux}


def pipeline_matrix(root: Path) -> dict[str, Path]:
    """Every family of the matrix saved under ``root``: {family: pipeline folder}."""
    return {family: build(root / family) for family, build in FAMILIES.items()}


def reloaded(source: Path):
    from diffusers import AutoPipelineForText2Image

    return AutoPipelineForText2Image.from_pretrained(source)


def overflowing_float16(source: Path, path: Path) -> Path:
    """``source`` with its VAE decoder's first convolution scaled by 1e5: float16 (largest 65504)
    overflows there and the image comes out NaN, as Flux's and SDXL's do; in bfloat16 and float32
    the group norm after it undoes the scale."""
    pipe = reloaded(source)
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.mul_(1e5)
        pipe.vae.decoder.conv_in.bias.mul_(1e5)
    return saved(pipe, path)


def black_and_passed(source: Path, path: Path) -> Path:
    """``source`` (a pipeline with a safety checker) made to decode every image black while its
    checker flags none: a black image the pipeline says it did not withhold."""
    pipe = reloaded(source)
    with torch.no_grad():
        pipe.vae.decoder.conv_out.weight.zero_()
        pipe.vae.decoder.conv_out.bias.fill_(-2.0)  # below -1, which decodes to 0
        pipe.safety_checker.concept_embeds_weights.fill_(2.0)  # cosines never reach 2: nothing is flagged
        pipe.safety_checker.special_care_embeds_weights.fill_(2.0)
    return saved(pipe, path)
