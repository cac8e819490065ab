"""`aa predict RUN IMAGES...`: a finished run's final model on new images, with the run's own preprocessing.

The final model is the refined one when the run refines (``--ssl`` other than none), else the
adapted one. Images go through the run's own input format: ``data.channels``, ``data.image_size``
(area averaging when shrinking), and its normalisation.

``--out`` writes a CSV (image, predicted, confidence) that a spreadsheet may open: a cell whose
text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP's list for CSV
injection) gets a leading ``'``, so that an image named ``=HYPERLINK(...).png`` shows as text and
never runs as a formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from aa_core.runs import AAError, Run, is_image, open_image, shown_name, walk_files, write_csv


def image_paths(inputs: list[str | Path]) -> list[Path]:
    """Image files named, and the images under folders named (recursively, sorted)."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in walk_files(item) if is_image(p))  # any depth; links to folders not followed
        elif item.is_file():
            out.append(item)
        else:
            raise AAError(f"{item} is neither an image file nor a folder; name image files or folders of images")
    if not out:
        raise AAError(f"no images in {', '.join(map(str, inputs))}; name image files or folders of images")
    return out


@dataclass
class Prediction:
    path: Path
    category: str
    confidence: float


class Predictor:
    """The final model with the run's preprocessing: PIL images -> categories and confidences."""

    def __init__(self, run: Run):
        self.categories = run.categories
        self.model = run.model()
        fmt = run.input_format()
        self.prepare, self.to_tensor = fmt.prepare(), fmt.plain()

    @torch.no_grad()
    def probabilities(self, images: list[Image.Image]) -> torch.Tensor:
        x = torch.stack([self.to_tensor(self.prepare(image)) for image in images])
        return self.model(x).float().softmax(dim=1)

    def predict(self, paths: list[Path], batch_size: int = 256) -> list[Prediction]:
        out = []
        for start in range(0, len(paths), batch_size):
            batch = paths[start : start + batch_size]
            images = []
            for path in batch:
                image = open_image(path)
                if image is None:
                    raise AAError(f"{shown_name(str(path))} does not open as an image aa can use (not an image, truncated, "
                                  "or over 64 M pixels or 512 MB); leave it out, or name readable images")  # fmt: skip
                images.append(image)
            confidence, index = self.probabilities(images).max(dim=1)
            out += [Prediction(p, self.categories[k], c) for p, k, c in zip(batch, index.tolist(), confidence.tolist())]
        return out


def write_predictions(predictions: list[Prediction], out: str | Path) -> None:
    """One row per image: its path and category as text (``aa_core.runs.write_csv``), its confidence to 4 places."""
    write_csv(Path(out), ["image", "predicted", "confidence"], ([str(p.path), p.category, f"{p.confidence:.4f}"] for p in predictions))
