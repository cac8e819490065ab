"""clip: drop synthetic images that CLIP does not see as their category.

Each category :math:`c` is described by a text :math:`t_c` (``template`` with the category and
the target domain: "a handwritten digit of a 7"). CLIP embeds image :math:`x` and every text and
scores them against each other:

.. math::
    p(c \\mid x) = \\operatorname{softmax}_c\\big(s \\cdot \\cos(f(x), g(t_c))\\big)

with :math:`s` CLIP's learnt logit scale. An image drawn for category :math:`y` is kept when
:math:`y` is among the ``top_k`` most likely categories and :math:`p(y \\mid x) \\ge`
``min_probability``; otherwise it is dropped, kept aside in ``dropped/`` and listed with the
category CLIP preferred. Its slot is made again with another seed.

Off by default: ``--set filters.clip='{}'`` turns it on with these defaults,
``--set filters.clip.model=PATH`` with another CLIP (a hub id or a local folder).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL.Image import Image
from pydantic import Field, field_validator

from aa_core.api import AAError, ImageFilter, ImageFilterContext, Options


class CLIPFilterOptions(Options):
    model: str = Field("openai/clip-vit-base-patch32", description="a CLIP model: hub id or local folder (transformers CLIPModel)")
    template: str = Field("a {domain} of a {category}", description="the text that describes each category; uses {category}, {domain}")
    top_k: int = Field(1, ge=1, description="keep an image whose category is among CLIP's k most likely")
    min_probability: float = Field(0.0, ge=0, le=1, description="and whose category has at least this probability")

    @field_validator("template")
    @classmethod
    def _names_the_category(cls, value: str) -> str:
        if "{category}" not in value:
            raise ValueError("the template must contain {category}")
        return value


class CLIPFilter(ImageFilter):
    """Image-text similarity against every category's description, with transformers' ``CLIPModel``."""

    Options = CLIPFilterOptions

    def __init__(self, options: CLIPFilterOptions, context: ImageFilterContext):
        super().__init__(options, context)
        import torch
        from transformers import CLIPModel, CLIPProcessor

        try:
            self.processor = CLIPProcessor.from_pretrained(options.model)
            self.model = CLIPModel.from_pretrained(options.model, use_safetensors=True)  # never a pickle, even where one is offered
        except (OSError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AAError(f"cannot load the CLIP model '{options.model}' of filters.clip: {reason}; "
                          "set filters.clip.model to a local folder or a hub id this machine can download") from None  # fmt: skip
        self.device = torch.device(context.device or "cpu")
        self.model.to(self.device).eval()
        self.categories = list(context.categories)
        self.texts = [options.template.format(category=c.replace("_", " "), domain=context.domain) for c in self.categories]

    def probabilities(self, images: Sequence[Image]):
        """:math:`p(c \\mid x)` for each image (rows) and category (columns)."""
        import torch

        inputs = self.processor(text=self.texts, images=[image.convert("RGB") for image in images], return_tensors="pt", padding=True)
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits_per_image
        return logits.float().softmax(dim=1).cpu()

    def reasons(self, images: Sequence[Image], prompts: Sequence[str], labels: Sequence[str]) -> list[str | None]:
        p = self.probabilities(images)
        out: list[str | None] = []
        for row, label in zip(p, labels):
            own = self.categories.index(label)
            best = int(row.argmax())
            rank = int((row > row[own]).sum())
            if rank >= self.options.top_k:
                out.append(f"looks like '{self.categories[best]}' ({row[best]:.2f}) more than '{label}' ({row[own]:.2f})")
            elif row[own] < self.options.min_probability:
                out.append(f"'{label}' has probability {row[own]:.2f} < {self.options.min_probability}")
            else:
                out.append(None)
        return out

    def close(self) -> None:
        self.model = None
