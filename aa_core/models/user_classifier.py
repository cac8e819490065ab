"""``model.init``: the user's own classifier as the run's start.

A transformers image-classification checkpoint (``AutoModelForImageClassification``, a hub id or
a folder, its labels in ``id2label``), or a timm one (a folder ``save_for_hf`` wrote, or a
``timm/...`` hub id: ``config.json`` naming its ``architecture`` and its ``label_names``). Its
classification layer :math:`(W, b)` is split off: the rest is the backbone :math:`g` (what the
layer reads), and the head keeps only the rows of the run's categories, in the run's order:

.. math:: \\mathrm{logits}_c(x) = W_{\\pi(c)}\\, g(x) + b_{\\pi(c)}

with :math:`\\pi(c)` the checkpoint's label named as category :math:`c` (exactly, else ignoring
case, spaces and underscores). Labels the run does not use are dropped; a category the checkpoint
lacks is one line naming it. So two checkpoints that differ only in the order of their labels
predict alike, and ``source_only.steps=0`` is the user's classifier as it is. There is no
bottleneck: the algorithms adapt :math:`g` and the head from there.
"""

from __future__ import annotations

import json
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


def timm_config(where: str) -> dict | None:
    """The timm config of a timm checkpoint (a folder whose config.json names an ``architecture``,
    or a ``timm/`` hub id); ``None`` for a transformers one."""
    folder = Path(where).expanduser()
    if folder.is_dir():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return config if isinstance(config, dict) and "architecture" in config else None
    if where.startswith(("timm/", "hf-hub:")):
        from timm.models._hub import load_model_config_from_hf

        return load_model_config_from_hf(where.removeprefix("hf-hub:"))[0]
    return None


def timm_name(where: str) -> str:
    return f"local-dir:{Path(where).expanduser()}" if Path(where).expanduser().is_dir() else f"hf-hub:{where.removeprefix('hf-hub:')}"


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
    """The checkpoint's labels by index, from its config alone (no weights)."""
    from transformers import AutoConfig

    timm = timm_config(where)
    if timm is not None:
        names = timm.get("label_names") or timm.get("pretrained_cfg", {}).get("label_names")
        if not names:
            raise AAError(f"model.init {where} is a timm checkpoint without label names; "
                          "save it with label_names in its config (timm's save_for_hf(model_config={'label_names': [...]}))")  # fmt: skip
        return dict(enumerate(names))
    try:
        return AutoConfig.from_pretrained(where).id2label
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AAError(f"cannot load model.init {where}: {reason}; give a local folder or a hub id this machine can download") from None


def image_format(where: str) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """The checkpoint's input: its square side, and the RGB mean and standard deviation of its processor."""
    from transformers import AutoImageProcessor

    timm = timm_config(where)
    if timm is not None:
        cfg = timm.get("pretrained_cfg", {})
        return int(cfg.get("input_size", (3, 224, 224))[-1]), tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))

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


class TimmFeatures(nn.Module):
    """A timm classifier with its classification layer reset: pixels -> pooled features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_features = model.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def timm_classifier(where: str, categories: list[str]) -> ImageClassifier:
    import timm

    rows = label_rows(labels_of(where), categories, where)
    try:
        model = timm.create_model(timm_name(where), pretrained=True)
    except Exception as exc:  # timm raises what its loaders raise
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise AAError(f"cannot load model.init {where} with timm ({type(exc).__name__}: {reason}); give a folder timm's "
                      "save_for_hf wrote (safetensors) or a timm/ hub id this machine can download") from None  # fmt: skip
    layer = model.get_classifier()
    if not isinstance(layer, nn.Linear):
        raise AAError(f"model.init {where}'s classifier is a {type(layer).__name__}, not one linear layer aa can split off")
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone() if layer.bias is not None else None
    model.reset_classifier(0)
    classifier = ImageClassifier(TimmFeatures(model), len(categories), bottleneck_dim=None)
    with torch.no_grad():
        classifier.head.weight.copy_(weight[rows])
        classifier.head.bias.copy_(bias[rows] if bias is not None else torch.zeros(len(rows)))
    return classifier


def user_classifier(where: str, categories: list[str]) -> ImageClassifier:
    """The checkpoint as the run's classifier: its features, and its head's rows of the run's categories."""
    if timm_config(where) is not None:
        return timm_classifier(where, categories)
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
