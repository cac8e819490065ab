"""aa's generation stage against a bare diffusers loop, like with like, for each family of the matrix.

    python benchmarks/generation.py [--model ID_OR_FOLDER] [--images-per-class 8] [--batch-size 8]
                                    [--steps 10] [--repeats 3] [--safety-checker] [--families sd15,sdxl,sd3,flux]

Without ``--model`` it builds the tests' tiny pipelines of the SD 1.5, SDXL, SD3 and Flux families
(``tests/tiny_pipelines.py``; offline, 64x64 images) and measures each. Both sides load the same
pipeline in the same dtype (aa's ``auto``: bfloat16 on a GPU that has it, else float16; float32 on
the CPU) with the same safety-checker setting (off unless ``--safety-checker``), render every image
of the plan in the same batches, with one seeded generator per image, the same steps and the
pipeline's own guidance, and write PNGs; the bare loop is the few lines a user would write by hand.
Each side runs in a fresh process of its own.

Throughput is read the same way for both, from the PNGs' modification times: a batch over the median
time from one batch's last image to the next batch's, so that loading and warm-up (the first batch)
count for neither and a pause of the machine moves one interval, not the rate. Each side runs
``--repeats`` times, alternating, and its best rate counts (the least disturbed by other work).
The images are compared pixel for pixel, slot by slot. Prints one row per family: images/s of
each side, their ratio (aim: aa at least 0.95 of the bare loop) and how many of aa's images
equal the bare loop's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = 64  # the tiny pipelines' images; Flux would default to 1024


def auto_dtype(device: str):
    """What ``generator.dtype: auto`` picks, written out as a user would."""
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def bare_loop(model: str, slots, batch_size: int, steps: int, size: int | None, safety_checker: bool, out: Path, device: str) -> float:
    """Load, render and save as a user would by hand; return the seconds."""
    from diffusers import AutoPipelineForText2Image

    started = time.perf_counter()
    has_checker = "safety_checker" in AutoPipelineForText2Image.load_config(model)
    off = {"safety_checker": None, "requires_safety_checker": False} if has_checker and not safety_checker else {}
    pipe = AutoPipelineForText2Image.from_pretrained(model, dtype=auto_dtype(device), use_safetensors=True, **off).to(device)
    pipe.set_progress_bar_config(disable=True)
    sized = {"height": size, "width": size} if size else {}
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(slots), batch_size):
        batch = slots[start : start + batch_size]
        generators = [torch.Generator("cpu").manual_seed(slot.seed) for slot in batch]
        images = pipe(prompt=[slot.prompt for slot in batch], num_inference_steps=steps, generator=generators, **sized).images
        for slot, image in zip(batch, images):
            image.save(out / f"{slot.label}-{slot.index}.png")
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def aa_generate(run: Path, sets: list[str]) -> float:
    """``aa run --until generate`` in a fresh folder; return the generate stage's seconds."""
    aa = [sys.executable, "-m", "aa_cli.main"]
    subprocess.run([*aa, "run", "--out", str(run), "--until", "generate", *sets], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return json.loads((run / "stages.json").read_text())["generate"]["seconds"]


def steady_rate(folder: Path, batch_size: int) -> float:
    """Images per second after the first batch, by the PNGs' times: a batch over the median time
    from one full batch's last image to the next's (a pause of the machine moves one interval,
    not the rate)."""
    stamps = sorted(p.stat().st_mtime for p in folder.rglob("*.png"))
    ends = stamps[batch_size - 1 :: batch_size]  # the last image of each full batch
    return batch_size / float(np.median(np.diff(ends)))


def same_pixels(run: Path, bare: Path) -> tuple[int, int, int]:
    """(images equal to the bare loop's, images compared, largest difference in levels), slot by slot."""
    rows = [json.loads(line) for line in (run / "source" / "metadata.jsonl").read_text().splitlines()]
    equal, worst = 0, 0
    for row in rows:
        ours = np.asarray(Image.open(run / "source" / row["file_name"]), dtype=int)
        theirs = np.asarray(Image.open(bare / f"{row['label']}-{row['slot']}.png"), dtype=int)
        difference = int(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else 255
        equal += difference == 0
        worst = max(worst, difference)
    return equal, len(rows), worst


def measure(family: str, model: str, args, root: Path, device: str) -> dict:
    from aa_core.data.synthetic import plan

    sets = ["--generator", "stable-diffusion", "--set", f"generator.model={model}",
            "--set", f"generator.images_per_class={args.images_per_class}", "--set", f"generator.batch_size={args.batch_size}",
            "--set", f"generator.steps={args.steps}", "--set", f"generator.safety_checker={str(args.safety_checker).lower()}",
            "--set", f"task.categories=[{args.categories}]"]  # fmt: skip
    size = SIZE if args.model is None else None
    if size:
        sets += ["--set", f"generator.height={size}", "--set", f"generator.width={size}"]
    rates = {"bare": [], "aa": []}
    totals = {"bare": [], "aa": []}
    slots = None
    for k in range(args.repeats):
        run, bare = root / family / f"aa-{k}", root / family / f"bare-{k}"
        totals["aa"].append(aa_generate(run, sets))
        rates["aa"].append(steady_rate(run / "source", args.batch_size))
        if slots is None:
            prompts = [json.loads(line) for line in (run / "prompts.jsonl").read_text().splitlines()]
            slots = plan(prompts, args.images_per_class, 0)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:  # a process of its own, as aa's
            loop = (model, slots, args.batch_size, args.steps, size, args.safety_checker, bare, device)
            totals["bare"].append(fresh.submit(bare_loop, *loop).result())
        rates["bare"].append(steady_rate(bare, args.batch_size))
    equal, compared, worst = same_pixels(root / family / "aa-0", root / family / "bare-0")
    return {"family": family, "images": len(slots), "bare": max(rates["bare"]), "aa": max(rates["aa"]),
            "bare_total": min(totals["bare"]), "aa_total": min(totals["aa"]),
            "equal": equal, "compared": compared, "worst": worst}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a hub id or a pipeline folder; default: the tiny matrix built here")
    parser.add_argument("--images-per-class", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, alternating; the best rate counts")
    parser.add_argument("--safety-checker", action="store_true", help="keep the pipeline's safety checker on, on both sides")
    parser.add_argument("--families", default="sd15,sdxl,sd3,flux", help="which families of the tiny matrix to measure")
    parser.add_argument("--categories", default="0,1,2,3,4,5,6,7,8,9")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aa-gen-bench-"))
    if args.model is None:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from tiny_pipelines import pipeline_matrix

        wanted = args.families.split(",")
        models = {family: str(path) for family, path in pipeline_matrix(root / "models").items() if family in wanted}
    else:
        models = {"model": args.model}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    checker = "on" if args.safety_checker else "off"
    print(f"batch {args.batch_size}, {args.steps} steps, {device} ({str(auto_dtype(device)).removeprefix('torch.')}), "
          f"safety checker {checker} on both sides, best of {args.repeats}; images/s after the first batch")  # fmt: skip
    print(f"{'family':8} {'images':>6} {'bare loop':>10} {'aa':>10} {'aa/bare':>8} {'same pixels':>12}   seconds with loading (bare, aa)")
    for family, model in models.items():
        r = measure(family, model, args, root, device)
        same = f"{r['equal']}/{r['compared']}" + ("" if r["equal"] == r["compared"] else f" (max {r['worst']})")
        print(f"{family:8} {r['images']:6d} {r['bare']:10.2f} {r['aa']:10.2f} {r['aa'] / r['bare']:8.3f} {same:>12}   "
              f"{r['bare_total']:.1f}, {r['aa_total']:.1f}", flush=True)  # fmt: skip
    print("aim: aa/bare >= 0.95 for each family")


if __name__ == "__main__":
    main()
