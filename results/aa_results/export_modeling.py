"""Loading an exported Adapt Anything model without Adapt Anything: torch, timm, safetensors, Pillow.

``aa export RUN DIR`` writes this file into ``DIR`` as ``modeling.py``, beside ``config.json``,
``model.safetensors`` and the model card. Use it as::

    import modeling
    model = modeling.load("DIR")                       # an nn.Module in evaluation mode
    print(modeling.predict("DIR", ["a.png", "b.png"]))  # [(category, confidence), ...]

The network is the classifier Adapt Anything trains: a timm backbone without its classifier
(``config["backbone"]``; Adapt Anything's own tiny backbones are in ``backbones.py`` beside this
file), a bottleneck Linear-BatchNorm-ReLU, and a head: one linear layer in the safetensors file,
or, for algorithms with another head (MCD's two classifiers, SymNets' target half), a TorchScript
module in ``head.pt``. Preprocessing is the run's own: grey or colour, resized to a square
(area averaging when shrinking, bilinear when growing), scaled and normalised.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn


class ExportedClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, bottleneck_dim: int, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Sequential(nn.Linear(backbone.num_features, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.ReLU())
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bottleneck(self.backbone(x)))


def read_config(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def register_backbones(folder: Path) -> None:
    """Adapt Anything's own timm backbones (aa_small_cnn, aa_vit_tiny), when the export ships them."""
    path = folder / "backbones.py"
    if path.is_file() and "aa_exported_backbones" not in sys.modules:
        spec = importlib.util.spec_from_file_location("aa_exported_backbones", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)


def load(folder: str | Path) -> nn.Module:
    """The exported network with its weights, in evaluation mode."""
    folder = Path(folder)
    config = read_config(folder)
    register_backbones(folder)
    backbone = timm.create_model(config["backbone"], pretrained=False, num_classes=0, in_chans=config["preprocessing"]["channels"])
    if config["head"] == "linear":
        head = nn.Linear(config["bottleneck_dim"], len(config["classes"]))
    else:
        head = torch.jit.load(str(folder / "head.pt"))
    model = ExportedClassifier(backbone, config["bottleneck_dim"], head)
    weights = load_file(str(folder / "model.safetensors"))
    model.load_state_dict(weights)
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
