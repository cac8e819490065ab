"""``model.init``: the user's own classifier as the run's start.

A transformers image-classification checkpoint (``AutoModelForImageClassification``, a hub id or
a folder, its labels in ``id2label``). Its classification layer :math:`(W, b)` is split off: the
rest is the backbone :math:`g` (what the layer reads), and the head keeps only the rows of the
run's categories, in the run's order:

.. math:: \\mathrm{logits}_c(x) = W_{\\pi(c)}\\, g(x) + b_{\\pi(c)}

with :math:`\\pi(c)` the checkpoint's label named as category :math:`c` (exactly, else ignoring
case, spaces and underscores). Labels the run does not use are dropped; a category the checkpoint
lacks is one line naming it. So two checkpoints that differ only in the order of their labels
predict alike, and ``source_only.steps=0`` is the user's classifier as it is. There is no
bottleneck: the algorithms adapt :math:`g` and the head from there.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aa_core.errors import AAError
from aa_core.models.classifier import ImageClassifier


def folded(name: str) -> str:
    return "".join(name.replace("_", " ").split()).casefold()


def label_rows(id2label: dict, categories: list[str], where: str) -> list[int]:
    """:math:`\\pi`: for each category, the index of the checkpoint's label of that name."""
    labels = {int(i): str(name) for i, name in id2label.items()}
    exact = {name: i for i, name in labels.items()}
    loose = {folded(name): i for i, name in labels.items()}
    rows, missing = [], []
    for category in categories:
        i = exact.get(category, loose.get(folded(category)))
        (missing.append(category) if i is None else rows.append(i))
    if missing:
        shown = ", ".join(list(labels.values())[:6]) + (", ..." if len(labels) > 6 else "")
        raise AAError(f"model.init {where} has no label {missing[0]!r} (its labels: {shown}); "
                      "name the categories as its labels (task.categories), or give a checkpoint that knows them")  # fmt: skip
    return rows


def load_checkpoint(where: str):
    """The transformers classifier at ``where``; one line for what cannot be loaded or is no image classifier."""
    from transformers import AutoModelForImageClassification

    try:
        return AutoModelForImageClassification.from_pretrained(where, use_safetensors=True)
    except ValueError as exc:
        kind = str(exc).split("Unrecognized configuration class", 1)[-1].split(" for ", 1)[0].strip(" <>'\"").rsplit(".", 1)[-1]
        raise AAError(f"model.init {where} is not an image classifier ({kind or 'another task'}); "
                      "give a transformers AutoModelForImageClassification checkpoint with its id2label") from None  # fmt: skip
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AAError(f"cannot load model.init {where}: {reason}; give a local folder or a hub id this machine can download "
                      "(safetensors weights)") from None  # fmt: skip


def labels_of(where: str) -> dict:
    """The checkpoint's ``id2label``, from its config alone (no weights)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(where).id2label
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AAError(f"cannot load model.init {where}: {reason}; give a local folder or a hub id this machine can download") from None


def image_format(where: str) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """The checkpoint's input: its square side, and the RGB mean and standard deviation of its processor."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(where)
    crop, size = getattr(processor, "crop_size", None) or {}, getattr(processor, "size", None) or {}
    side = crop.get("height") or size.get("height") or size.get("shortest_edge")
    return int(side), tuple(processor.image_mean), tuple(processor.image_std)


def last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classification layer: the last ``nn.Linear`` of the model's classifier (``get_output_embeddings``
    where the model has none), with its parent and attribute name, to replace it."""
    head = getattr(model, "classifier", None) or getattr(model, "head", None) or getattr(model, "fc", None)
    if isinstance(head, nn.Linear):
        return model, next(n for n in ("classifier", "head", "fc") if getattr(model, n, None) is head), head
    if head is not None:
        for parent in [head, *head.modules()]:
            for name, child in reversed(list(parent.named_children())):
                if isinstance(child, nn.Linear):
                    return parent, name, child
    raise AAError(f"model.init's {type(model).__name__} has no linear classification layer aa can split off; give another checkpoint")


class Features(nn.Module):
    """The checkpoint without its classification layer: pixels -> what that layer reads."""

    def __init__(self, model: nn.Module, num_features: int):
        super().__init__()
        self.model = model
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def user_classifier(where: str, categories: list[str]) -> ImageClassifier:
    """The checkpoint as the run's classifier: its features, and its head's rows of the run's categories."""
    model = load_checkpoint(where)
    rows = label_rows(model.config.id2label, categories, where)
    parent, name, layer = last_linear(model)
    setattr(parent, name, nn.Identity())  # the model now outputs the features its layer read
    classifier = ImageClassifier(Features(model, layer.in_features), len(categories), bottleneck_dim=None)
    with torch.no_grad():
        classifier.head.weight.copy_(layer.weight[rows])
        classifier.head.bias.copy_(layer.bias[rows] if layer.bias is not None else torch.zeros(len(rows)))
    return classifier


def checkpoint_digest(where: str) -> str | dict:
    """A local folder's weights and config by content (a hub id: its name)."""
    from aa_core.run_folder import file_digest

    folder = Path(where).expanduser()
    if not folder.is_dir():
        return where
    return {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.suffix in (".safetensors", ".json")}
