"""Loading an exported Adapt Anything model without Adapt Anything: torch, timm, safetensors, Pillow.

``aa export RUN DIR`` writes this file into ``DIR`` as ``modeling.py``, beside ``config.json``,
``model.safetensors`` and the model card. Use it as::

    import modeling
    model = modeling.load("DIR")                       # an nn.Module in evaluation mode
    print(modeling.predict("DIR", ["a.png", "b.png"]))  # [(category, confidence), ...]

The folder ships data, never code: ``model.safetensors`` holds tensors alone, and ``config.json``
describes the network, which this file builds with its own plain torch and timm code. It runs
nothing else from the folder (no pickle, no TorchScript, no other module). The network is the
classifier Adapt Anything trains:

* ``backbone``: a timm model without its classifier (``{"name", "in_chans", "num_features"}``),
  or one of Adapt Anything's own tiny ones, written out below (``aa_small_cnn``, ``aa_vit_tiny``);
* ``bottleneck`` and ``head``: layers described by ``"type"`` (``LAYERS``): ``linear``,
  ``batch_norm``, ``relu``, ``dropout``, ``sequential``, and the two heads adaptation algorithms
  predict through: ``mean_of_probabilities`` (MCD's two classifiers:
  :math:`\\log \\frac1n \\sum_i \\mathrm{softmax}(c_i(f))`) and ``columns`` (SymNets' 2K-wide
  classifier read from column ``start`` on). Each composite names its parts as the weights do.

Preprocessing is the run's own: grey or colour, resized to a square (area averaging when
shrinking, bilinear when growing), scaled and normalised.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

try:
    from timm.layers import HybridEmbed
except ImportError:  # timm before 1.0.9 kept it with its hybrid models
    from timm.models.vision_transformer_hybrid import HybridEmbed


# --- Adapt Anything's own tiny backbones (timm's zoo starts at ImageNet sizes) -----------------


class SmallCNN(nn.Module):
    """``aa_small_cnn``: conv3x3(w)-BN-ReLU, conv3x3(2w)-BN-ReLU-maxpool, conv3x3(4w)-BN-ReLU-maxpool, global average.

    ``w`` is a quarter of ``num_features`` (32 since Adapt Anything 0.2, 16 before)."""

    def __init__(self, in_chans: int, num_features: int):
        width = num_features // 4
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(in_chans, width), *block(width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 4 * width),
                                      nn.MaxPool2d(2))  # fmt: skip
        self.num_features = 4 * width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def vit_tiny(in_chans: int, num_features: int) -> VisionTransformer:
    """``aa_vit_tiny``: timm's ViT, 2 blocks of width 64 and 4 heads, over a two-layer convolutional stem cut into 2x2 patches.

    Its width has never changed: ``build_backbone`` refuses a config that says otherwise."""
    stem = nn.Sequential(
        nn.Conv2d(in_chans, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
    )  # fmt: skip
    return VisionTransformer(img_size=8, patch_size=2, in_chans=in_chans, num_classes=0, embed_dim=64, depth=2, num_heads=4,
                             mlp_ratio=2.0, dynamic_img_size=True, embed_layer=partial(HybridEmbed, backbone=stem))  # fmt: skip


OWN_BACKBONES = {"aa_small_cnn": SmallCNN, "aa_vit_tiny": vit_tiny}


def build_backbone(spec: dict) -> nn.Module:
    name, in_chans = spec["name"], spec["in_chans"]
    if name in OWN_BACKBONES:
        backbone = OWN_BACKBONES[name](in_chans, spec["num_features"])
    else:
        backbone = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)
    if backbone.num_features != spec["num_features"]:
        raise ValueError(f"backbone {name} has {backbone.num_features} features, config.json says {spec['num_features']}")
    return backbone


# --- the bottleneck and the heads, from their description ------------------------------------


class MeanOfProbabilities(nn.Module):
    """:math:`\\log \\frac1n \\sum_i \\mathrm{softmax}(c_i(f))` over the named classifiers (MCD's c1, c2)."""

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        for name, part in parts.items():
            self.add_module(name, part)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        total = sum(part(f).softmax(dim=1) for part in self.children())
        return (total / len(self._modules)).clamp_min(1e-12).log()


class Columns(nn.Module):
    """The named part's outputs from column ``start`` on (SymNets' target half of its 2K outputs)."""

    def __init__(self, parts: dict[str, nn.Module], start: int):
        super().__init__()
        [(name, part)] = parts.items()  # exactly one
        self.add_module(name, part)
        self.start = start

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return next(iter(self.children()))(f)[:, self.start :]


def parts(spec: dict) -> dict[str, nn.Module]:
    return {name: build_layer(part) for name, part in spec["parts"].items()}


LAYERS = {
    "linear": lambda s: nn.Linear(s["in_features"], s["out_features"], bias=s["bias"]),
    "batch_norm": lambda s: nn.BatchNorm1d(s["num_features"], eps=s["eps"], momentum=s["momentum"]),
    "relu": lambda s: nn.ReLU(),
    "dropout": lambda s: nn.Dropout(s["p"]),  # nothing when predicting
    "sequential": lambda s: nn.Sequential(*(build_layer(layer) for layer in s["layers"])),
    "mean_of_probabilities": lambda s: MeanOfProbabilities(parts(s)),
    "columns": lambda s: Columns(parts(s), s["start"]),
}


def build_layer(spec: dict) -> nn.Module:
    if spec["type"] not in LAYERS:
        raise ValueError(f"unknown layer type {spec['type']!r} in config.json; known: {', '.join(LAYERS)}")
    return LAYERS[spec["type"]](spec)


class ExportedClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, bottleneck: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.bottleneck, self.head = backbone, bottleneck, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bottleneck(self.backbone(x)))


def build(config: dict) -> ExportedClassifier:
    """The network ``config`` describes, with fresh weights."""
    return ExportedClassifier(build_backbone(config["backbone"]), build_layer(config["bottleneck"]), build_layer(config["head"]))


def read_config(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def load(folder: str | Path) -> nn.Module:
    """The exported network with its weights, in evaluation mode."""
    folder = Path(folder)
    model = build(read_config(folder))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval()


def preprocess(image: Image.Image, preprocessing: dict) -> torch.Tensor:
    """One PIL image -> the (C, H, W) tensor the model was trained on."""
    image = image.convert("L" if preprocessing["channels"] == 1 else "RGB")
    size = preprocessing["image_size"]
    if image.size != (size, size):
        shrinking = image.width * image.height > size * size
        image = image.resize((size, size), Image.BOX if shrinking else Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32)
    x = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
    std = torch.tensor(preprocessing["std"]).view(-1, 1, 1)
    # (x / 255 - mean) / std, computed in the order training computed it
    return x.mul_(1 / (255 * std)).sub_(torch.tensor(preprocessing["mean"]).view(-1, 1, 1) / std)


@torch.no_grad()
def predict(folder: str | Path, paths: list[str | Path], model: nn.Module | None = None) -> list[tuple[str, float]]:
    """(category, confidence) for each image file."""
    config = read_config(folder)
    model = model or load(folder)
    x = torch.stack([preprocess(Image.open(p), config["preprocessing"]) for p in paths])
    confidence, index = model(x).float().softmax(dim=1).max(dim=1)
    return [(config["classes"][k], c) for k, c in zip(index.tolist(), confidence.tolist())]
