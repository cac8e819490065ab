"""clip: any checkpoint transformers opens with ``AutoModelForZeroShotImageClassification`` and
``AutoProcessor`` (CLIP, SigLIP, SigLIP 2, ALIGN, MetaCLIP, ...), from a hub id or a local folder.

Image :math:`x` and text :math:`t` are embedded by the model's two towers, :math:`f(x)` and
:math:`g(t)`, each L2-normalised; the model's logit is

.. math:: \\ell(x, t) = s \\cos(f(x), g(t)) + b

with :math:`s = e^{\\text{logit\\_scale}}` and :math:`b` the ``logit_bias`` of sigmoid-trained
models (SigLIP; 0 for CLIP), or :math:`s = 1/\\tau` for ALIGN's temperature: transformers'
``logits_per_image``, computed here in two passes so the texts are embedded once.

``--vlm clip --set vlm.model=openai/clip-vit-base-patch16``. Weights load from safetensors only,
as a pickled checkpoint can run code; ``vlm.allow_pickle=true`` accepts one you trust. The dtype
is chosen as the generators choose it (``auto``: bfloat16 on a GPU that has it, float32 on the CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from aa_core.api import AAError, Options, VisionLanguageModel, VLMContext, auto_dtype, file_digest

WEIGHTS = ("*.safetensors", "*.bin", "config.json")


class TransformersVLMOptions(Options):
    model: str = Field("openai/clip-vit-base-patch16", description="hub id or local folder of a zero-shot image classifier")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that has it, float32 on the CPU"
    )
    allow_pickle: bool = Field(False, description="also load pickled weights (.bin), which can run code: only a checkpoint you trust")


class ImageBatch:
    """The processor's image half: RGB images -> ``pixel_values`` (picklable, for data-loader workers)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images: Sequence):
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]


class TransformersVLM(VisionLanguageModel):
    """transformers' zero-shot image classification models, their two towers apart."""

    Options = TransformersVLMOptions

    @classmethod
    def inputs(cls, options: TransformersVLMOptions):
        """A local folder's weights and config by content: replacing them runs the zero-shot pass again."""
        folder = Path(options.model).expanduser()
        if not folder.is_dir():
            return None
        return {str(p.relative_to(folder)): file_digest(p) for pattern in WEIGHTS for p in sorted(folder.glob(pattern))}

    def __init__(self, options: TransformersVLMOptions, context: VLMContext):
        super().__init__(options, context)
        import torch

        self.device = torch.device(context.device or "cpu")
        self.dtype = auto_dtype(options.dtype, self.device)
        self.processor, self.model = load(options, self.dtype)
        self.model.to(self.device).eval()
        self.logit_scale, self.logit_bias = scale_and_bias(self.model, options.model)
        # SigLIP was trained on texts padded to their full length and pools the last position
        self.padding = "max_length" if self.model.config.model_type.startswith("siglip") else True

    def embed_texts(self, texts: Sequence[str]):
        import torch

        inputs = self.processor.tokenizer(list(texts), padding=self.padding, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(**{k: v.to(self.device) for k, v in inputs.items()})
        return normalised(out)

    def preprocessor(self):
        return ImageBatch(self.processor.image_processor)

    def embed_images(self, pixels):
        import torch

        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype))
        return normalised(out)

    def close(self) -> None:
        self.model = None

    @classmethod
    def image_format(cls, options: TransformersVLMOptions):
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(options.model)
        crop = getattr(processor, "crop_size", None) or {}
        size = getattr(processor, "size", None) or {}
        side = crop.get("height") or size.get("height") or size.get("shortest_edge")
        return int(side), tuple(processor.image_mean), tuple(processor.image_std)

    def image_tower(self):
        return ImageTower(self.model)


class ImageTower(torch.nn.Module):
    """Pixels -> the model's projected image embedding; the text tower dropped (it is not trained)."""

    def __init__(self, model):
        super().__init__()
        for name in ("text_model", "text_projection"):
            if getattr(model, name, None) is not None:
                setattr(model, name, None)
        self.model = model

    def forward(self, pixels):
        out = self.model.get_image_features(pixel_values=pixels)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def load(options: TransformersVLMOptions, dtype):
    """The processor and the model; one line for an id that cannot be loaded or a checkpoint of another task."""
    from transformers import AutoModelForZeroShotImageClassification, AutoProcessor

    where = options.model
    folder = Path(where).expanduser()
    if folder.is_dir() and not options.allow_pickle and not list(folder.glob("*.safetensors")) and list(folder.glob("*.bin")):
        raise AAError(f"vlm.model {where} holds pickled weights (.bin) only, which can run code when loaded; "
                      "convert them to safetensors, or set vlm.allow_pickle=true for a checkpoint you trust")  # fmt: skip
    try:
        processor = AutoProcessor.from_pretrained(where)
        safe = None if options.allow_pickle else True  # True: never a pickle, even where the hub has one
        model = AutoModelForZeroShotImageClassification.from_pretrained(where, dtype=dtype, use_safetensors=safe)
    except ValueError as exc:  # transformers: "Unrecognized configuration class ... for this kind of AutoModel"
        kind = str(exc).split("Unrecognized configuration class", 1)[-1].split(" for ", 1)[0].strip(" <>'\"").rsplit(".", 1)[-1]
        raise AAError(f"vlm.model {where} is not a zero-shot image classifier ({kind or 'another task'}); give a CLIP, "
                      "SigLIP, ALIGN or similar checkpoint (transformers' AutoModelForZeroShotImageClassification)") from None  # fmt: skip
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AAError(f"cannot load vlm.model {where}: {reason}; "
                      "set vlm.model to a local folder or a hub id this machine can download") from None  # fmt: skip
    if not hasattr(model, "get_text_features") or not hasattr(model, "get_image_features"):
        raise AAError(f"vlm.model {where} ({type(model).__name__}) does not embed texts and images apart; give a CLIP-like two-tower model")
    return processor, model


def scale_and_bias(model, where: str) -> tuple[float, float]:
    """:math:`s` and :math:`b` of the model's logits (see the module's docstring)."""
    if hasattr(model, "logit_scale"):
        bias = model.logit_bias.detach().float().item() if hasattr(model, "logit_bias") else 0.0
        return model.logit_scale.detach().float().exp().item(), bias
    if hasattr(model, "temperature"):  # ALIGN
        return 1.0 / model.temperature.detach().float().item(), 0.0
    raise AAError(f"vlm.model {where} ({type(model).__name__}) has no logit scale or temperature; give a CLIP-like model")


def normalised(out):
    """The projected embedding (a tensor, or transformers 5's output's ``pooler_output``), L2-normalised, float32 on the CPU."""
    features = getattr(out, "pooler_output", out) if not hasattr(out, "norm") else out
    features = features.float()
    return (features / features.norm(dim=-1, keepdim=True)).cpu()
