"""The zero-shot pass (``aa_core.zero_shot.image_logits``) against a bare transformers loop over the
same images: images per second, and the peak memory of each at two sizes of the target.

    python benchmarks/zero_shot.py [--images 1000,10000] [--tower tiny|base] [--side 64]

The model is a CLIP built from a config with random weights (no download): ``tiny`` is the tests'
(32 px, 2 layers of width 32), ``base`` a ViT-B/16-sized tower (224 px, 12 layers of width 768;
slow on a CPU). The target is ``--images`` random PNGs of ``--side`` pixels. Each measurement
runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; the bare loop is
what a user would write: open each batch, the processor, ``get_image_features``, normalise, the
text weights' product. Aims (issue 35): ours >= 0.95x the bare loop's images/s; memory flat
from 1k to 10k images.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 64


def build_model(path: Path, tower: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from tiny_models import clip_tokenizer, tiny_clip
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    if tower == "tiny":
        tiny_clip(path)
        return
    text = {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 2, "vocab_size": 1000,
            "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 514}  # fmt: skip
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
              "image_size": 224, "patch_size": 16}  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)).save_pretrained(path)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    CLIPProcessor(image_processor=processor, tokenizer=clip_tokenizer(path / "tokenizer-src")).save_pretrained(path)


def make_images(folder: Path, n: int, side: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")


def measure(which: str, model: str, folder: str) -> dict:
    """(In a fresh process.) One pass of ``which`` over the images: seconds and peak memory."""
    import torch

    torch.set_num_threads(2)
    from aa_vlm.transformers_vlm import TransformersVLM

    from aa_core.contracts import VLMContext
    from aa_core.zero_shot import image_logits, text_weights

    paths = sorted(str(p) for p in Path(folder).glob("*.png"))
    vlm = TransformersVLM(TransformersVLM.Options(model=model), VLMContext(device=torch.device("cpu")))
    texts = {str(c): [f"a photo of a {c}"] for c in range(10)}
    head = {"weights": text_weights(vlm, texts, BATCH), "scale": torch.tensor(vlm.logit_scale), "bias": torch.tensor(vlm.logit_bias)}
    started = time.perf_counter()
    if which == "ours":
        logits = image_logits(vlm, head, paths, BATCH, num_workers=0, show=False)
    else:  # a bare transformers loop over the same images
        from PIL import Image

        processor, net, out = vlm.processor, vlm.model, []
        with torch.inference_mode():
            for k in range(0, len(paths), BATCH):
                images = [Image.open(p).convert("RGB") for p in paths[k : k + BATCH]]
                pixels = processor(images=images, return_tensors="pt")["pixel_values"]
                e = net.get_image_features(pixel_values=pixels)
                e = (e if isinstance(e, torch.Tensor) else e.pooler_output).float()
                out.append(head["scale"] * (e / e.norm(dim=1, keepdim=True)) @ head["weights"].T + head["bias"])
        logits = torch.cat(out)
    seconds = time.perf_counter() - started
    assert logits.shape == (len(paths), 10)
    return {"images": len(paths), "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="1000,10000")
    parser.add_argument("--tower", choices=["tiny", "base"], default="tiny")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "clip"
        build_model(model, args.tower)
        print(f"zero-shot pass, {args.tower} CLIP tower (random weights), {args.side} px PNGs, batch {BATCH}, 2 threads, CPU")
        print(f"{'images':>7} {'ours img/s':>11} {'bare img/s':>11} {'ratio':>6} {'ours MB':>8} {'bare MB':>8}")
        for n in [int(x) for x in args.images.split(",")]:
            folder = Path(tmp) / f"target-{n}"
            make_images(folder, n, args.side)
            row = {}
            for which in ("bare", "ours", "bare", "ours"):  # twice each, alternating: the second pass of each is kept
                proc = subprocess.run([sys.executable, __file__, "--measure", which, str(model), str(folder)],
                                      capture_output=True, text=True, check=True)  # fmt: skip
                row[which] = json.loads(proc.stdout.strip().splitlines()[-1])
            ours, bare = (row[w]["images"] / row[w]["seconds"] for w in ("ours", "bare"))
            print(f"{n:>7} {ours:>11.1f} {bare:>11.1f} {ours / bare:>6.2f} {row['ours']['peak_mb']:>8.0f} {row['bare']['peak_mb']:>8.0f}")


if __name__ == "__main__":
    main()
