"""Tiny, randomly initialised models saved the way real ones are published, so that tests load
them through the plugins' real ``from_pretrained`` paths without downloading anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

EOS = 514  # after the 2 x 256 byte symbols (an id of 2 would make transformers pool at the largest id instead)


def byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE writes bytes as (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [256 + i for i in range(256 - len(printable))]
    return [chr(c) for c in printable + shifted]


def clip_tokenizer(path: Path):
    """A CLIP BPE tokenizer over single characters (no merges), 77 tokens long as CLIP's."""
    from transformers import CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    chars = byte_symbols()
    vocab = {"<|startoftext|>": 0, "<|pad|>": 1}
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    vocab["<|endoftext|>"] = EOS  # CLIP pools its text at this token
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=77)


def tiny_clip_config(projection_dim: int = 32):
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                          vocab_size=1000, bos_token_id=0, pad_token_id=1, eos_token_id=EOS)  # fmt: skip
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=projection_dim)


def image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def tiny_clip(path: Path) -> Path:
    """A CLIPModel with its processor, as ``openai/clip-vit-base-patch32`` is laid out."""
    from transformers import CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    CLIPModel(tiny_clip_config()).save_pretrained(path)
    CLIPProcessor(image_processor=image_processor(), tokenizer=clip_tokenizer(path / "tokenizer-src")).save_pretrained(path)
    shutil.rmtree(path / "tokenizer-src")
    return path


def withhold_half(pipe) -> None:
    """Make the pipeline's tiny safety checker black out about half of its images: its one concept
    is a random direction, flagged above the median cosine of 16 sample images."""
    from diffusers.pipelines.stable_diffusion.safety_checker import cosine_distance

    checker = pipe.safety_checker
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(2.0)  # cosines never reach 2: nothing is withheld
        checker.special_care_embeds_weights.fill_(2.0)
        samples = pipe(["a sample"] * 16, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pil").images
        pixels = pipe.feature_extractor(samples, return_tensors="pt").pixel_values
        embeds = checker.visual_projection(checker.vision_model(pixels)[1])
        concept = torch.randn(1, embeds.shape[1], generator=torch.Generator().manual_seed(1))
        checker.concept_embeds.copy_(concept.expand_as(checker.concept_embeds))
        checker.concept_embeds_weights.fill_(cosine_distance(embeds, concept).median().item())


def tiny_stable_diffusion(path: Path, safety_checker: bool = False) -> Path:
    """A Stable Diffusion 1.x-shaped pipeline (64x64 images), saved with ``save_pretrained``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
    )  # fmt: skip
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, scheduler=scheduler,
        text_encoder=CLIPTextModel(tiny_clip_config().text_config), tokenizer=clip_tokenizer(path / "tokenizer-src"),
        safety_checker=StableDiffusionSafetyChecker(tiny_clip_config()) if safety_checker else None,
        feature_extractor=image_processor() if safety_checker else None,
        requires_safety_checker=safety_checker,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    if safety_checker:
        withhold_half(pipe)
    pipe.save_pretrained(path)
    shutil.rmtree(path / "tokenizer-src")
    return path


TINY_GLIDE = {"num_channels": 32, "num_res_blocks": 1, "num_head_channels": 32, "attention_resolutions": "8",
              "text_ctx": 16, "xf_width": 32, "xf_layers": 1, "xf_heads": 1, "dropout": 0.0}  # fmt: skip


def tiny_glide(path: Path, upsampler: bool = True) -> Path:
    """GLIDE's base model (64x64) and upsampler (256x256), tiny, saved as base.pt / upsample.pt with
    the options that build them beside (base.json / upsample.json)."""
    from glide_text2im.model_creation import (
        create_model_and_diffusion,
        model_and_diffusion_defaults,
        model_and_diffusion_defaults_upsampler,
    )

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    models = {"base": model_and_diffusion_defaults()}
    if upsampler:
        models["upsample"] = model_and_diffusion_defaults_upsampler()
    for name, defaults in models.items():
        extra = dict(TINY_GLIDE)
        model, _ = create_model_and_diffusion(**{**defaults, **extra, "use_fp16": False})
        with torch.no_grad():
            for key, parameter in model.named_parameters():
                if key in ("positional_embedding", "padding_embedding"):  # GLIDE allocates them with torch.empty
                    parameter.normal_(0, 0.01)
                elif not parameter.any():  # zero-initialised output layers: wake them, so the text matters
                    parameter.normal_(0, 1e-3)
        torch.save(model.state_dict(), path / f"{name}.pt")
        (path / f"{name}.json").write_text(json.dumps(extra))
    return path


def char_tokenizer(max_length: int = 16):
    """A fast tokenizer of single printable characters (no sentencepiece model needed), SigLIP-padded."""
    import string

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate(string.printable)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    special = {"pad_token": "<pad>", "unk_token": "<unk>", "eos_token": "</s>"}
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length, **special)


def tiny_siglip(path: Path) -> Path:
    """A SiglipModel with its processor, as ``google/siglip-base-patch16-224`` is laid out; its
    logit scale and bias set away from zero, so that both are seen in its logits."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    torch.manual_seed(0)
    config = SiglipConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=128,
                         max_position_embeddings=64, pad_token_id=0, eos_token_id=2, bos_token_id=2),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=8),
    )  # fmt: skip
    model = SiglipModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(1.2)
        model.logit_bias.fill_(-0.7)
    model.save_pretrained(path)
    processor = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=char_tokenizer(64))
    processor.save_pretrained(path)
    return path


def tiny_vit_classifier(path: Path, labels: list[str]) -> Path:
    """A transformers image classifier (ViT) with ``id2label``: a checkpoint of another task than zero-shot."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8,
                       id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})  # fmt: skip
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def tiny_timm_classifier(path: Path, labels: list[str]) -> Path:
    """A timm classifier (``test_resnet``, 32 px) saved as ``save_for_hf`` does, with its label names."""
    import timm
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=len(labels), pretrained=False)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    path.mkdir(parents=True, exist_ok=True)
    save_for_hf(model, str(path), model_config={"label_names": labels}, safe_serialization=True)
    return path
