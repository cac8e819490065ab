"""The zero-shot row: a vision-language model classifies the target from the category names alone.

Category :math:`c` is described by texts :math:`T_c`: the run's own prompts of that category (an
LLM prompter's descriptive sentences act as a prompt ensemble), or ``vlm.template`` filled with
the category and ``task.domain`` (the template's own "a {domain} of a {category}" where the run
has no prompts: a real source). Its classifier weight is the mean of their normalised text
embeddings, normalised again (Radford et al.'s prompt ensemble):

.. math::
    w_c = \\frac{\\bar g_c}{\\lVert \\bar g_c \\rVert}, \\qquad
    \\bar g_c = \\frac{1}{|T_c|} \\sum_{t \\in T_c} \\frac{g(t)}{\\lVert g(t) \\rVert}, \\qquad
    \\ell_c(x) = s \\, \\frac{f(x)^\\top w_c}{\\lVert f(x) \\rVert} + b

with the model's logit scale :math:`s` and bias :math:`b` (``VisionLanguageModel``); with one
text per category, :math:`\\ell` is transformers' ``logits_per_image``. Probabilities are the
softmax over categories.

Kept in the run folder, a part of the evaluation with a fingerprint of its own
(``run_folder.PARTS``): ``zero_shot_head.safetensors`` (the weights :math:`w`, :math:`s`,
:math:`b`: the texts are embedded once) and ``zero_shot.safetensors`` (every target image's
logits). The image pass streams: images are decoded and processed batch by batch by
``data.num_workers`` workers, and only the N x C logits are held. A rerun whose VLM, texts and
target are unchanged reads them back.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from aa_core.context import StageContext
from aa_core.data.prompts import read_prompts
from aa_core.fingerprints import zero_shot_fingerprint
from aa_core.training.progress import progress_bar

DEFAULT_TEMPLATE = "a {domain} of a {category}"  # the template prompter's own sentence


def class_texts(ctx: StageContext) -> dict[str, list[str]]:
    """Each category's texts, in category order: the run's prompts, or the template's one sentence."""
    c = ctx.config
    if c.vlm.template is None and c.data.source is None and ctx.folder.prompts.is_file():
        texts: dict[str, list[str]] = {category: [] for category in ctx.categories}
        for row in read_prompts(ctx.folder.prompts, ctx.categories):
            texts[row["label"]].append(row["text"])
        if all(texts.values()):
            return texts
    template = c.vlm.template or DEFAULT_TEMPLATE
    return {category: [template.format(category=category.replace("_", " "), domain=c.task.domain)] for category in ctx.categories}


def text_weights(vlm, texts: dict[str, list[str]], batch_size: int) -> torch.Tensor:
    """:math:`w`: one normalised row per category, the mean of its texts' normalised embeddings."""
    flat = [(i, text) for i, category in enumerate(texts) for text in texts[category]]
    embedded = torch.cat([vlm.embed_texts([t for _, t in flat[k : k + batch_size]]) for k in range(0, len(flat), batch_size)])
    owner = torch.tensor([i for i, _ in flat])
    sums = torch.zeros(len(texts), embedded.shape[1]).index_add_(0, owner, embedded)
    means = sums / torch.bincount(owner, minlength=len(texts)).unsqueeze(1)
    return means / means.norm(dim=1, keepdim=True)


class RGBImages(Dataset):
    """The images of ``paths`` as RGB, decoded when asked (in loader workers)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as image:
            return image.convert("RGB")


def image_logits(vlm, head: dict[str, torch.Tensor], paths: list[str], batch_size: int, num_workers: int, show: bool) -> torch.Tensor:
    """:math:`\\ell(x)` for every image of ``paths``, in order: N x C, streamed."""
    # its own generator: the loader's seed is not drawn from the run's random stream
    own = torch.Generator()
    loader = DataLoader(RGBImages(paths), batch_size=batch_size, num_workers=num_workers, collate_fn=vlm.preprocessor(), generator=own)
    out = []
    for pixels in progress_bar(loader, desc="zero-shot", disable=not show):
        out.append(head["scale"] * vlm.embed_images(pixels) @ head["weights"].T + head["bias"])
    return torch.cat(out) if out else torch.zeros(0, len(head["weights"]))


def zero_shot_probabilities(ctx: StageContext) -> torch.Tensor:
    """The zero-shot classifier's probabilities on the target (N x C): read back where the part is
    current, else computed by the main process and kept (the others wait and read them)."""
    from safetensors.torch import load_file

    folder, fp = ctx.folder, zero_shot_fingerprint(ctx)
    if ctx.is_main and not folder.is_current("zero_shot", fp):
        with torch.random.fork_rng(devices=[]):  # loading may initialise weights: the run draws what it drew without a VLM
            compute(ctx)
        ctx.part_done("zero_shot", fp)
    ctx.accelerator.wait_for_everyone()
    return load_file(folder.zero_shot)["logits"].softmax(dim=1)


def compute(ctx: StageContext) -> None:
    """(Main process.) Load the VLM, embed the texts (``zero_shot_head.safetensors``), then the target (``zero_shot.safetensors``)."""
    from aa_core.contracts import VLMContext

    c = ctx.config
    cls, options = ctx.implementation("vlm")
    vlm = cls(options, VLMContext(device=ctx.accelerator.device))
    try:
        texts = class_texts(ctx)
        head = {
            "weights": text_weights(vlm, texts, c.vlm.batch_size),
            "scale": torch.tensor(float(vlm.logit_scale)),
            "bias": torch.tensor(float(vlm.logit_bias)),
        }
        save(head, ctx.folder.zero_shot_head)
        logits = image_logits(vlm, head, ctx.target.paths, c.vlm.batch_size, c.data.num_workers, ctx.is_main)
        save({"logits": logits.contiguous()}, ctx.folder.zero_shot)
    finally:
        vlm.close()


def save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Whole or not at all: a temporary file renamed into place."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
