"""aa's generation stage against a bare diffusers loop: same pipeline, prompts, seeds, batch size, steps.

    python benchmarks/generation.py [--model ID_OR_FOLDER] [--images-per-class 8] [--batch-size 8] [--steps 10]

Without ``--model`` it builds the tests' tiny Stable Diffusion pipeline (offline, CPU). Both sides
load the pipeline, render every image of the plan with one seeded generator per image and write
PNGs; the bare loop is the few lines a user would write by hand. Throughput is read the same way
for both, from the PNGs' modification times: images after the first batch over the time from the
first batch's end to the last image, so that loading and warm-up count for neither. Prints both,
their ratio (aim: aa at least 0.95 of the bare loop), and the totals with loading.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def bare_loop(model: str, slots, batch_size: int, steps: int, out: Path, device: str) -> float:
    """Load, render and save as a user would by hand; return the seconds."""
    from diffusers import AutoPipelineForText2Image

    started = time.perf_counter()
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = AutoPipelineForText2Image.from_pretrained(model, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    out.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(slots), batch_size):
        batch = slots[start : start + batch_size]
        generators = [torch.Generator("cpu").manual_seed(slot.seed) for slot in batch]
        images = pipe(prompt=[slot.prompt for slot in batch], num_inference_steps=steps, generator=generators).images
        for slot, image in zip(batch, images):
            image.save(out / f"{slot.label}-{slot.index}.png")
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a hub id or a pipeline folder; default: a tiny pipeline built here")
    parser.add_argument("--images-per-class", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--categories", default="0,1,2,3,4,5,6,7,8,9")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aa-gen-bench-"))
    model = args.model
    if model is None:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from tiny_models import tiny_stable_diffusion

        model = str(tiny_stable_diffusion(root / "tiny-sd"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    run = root / "run"
    sets = ["--set", f"generator.model={model}", "--set", f"generator.images_per_class={args.images_per_class}",
            "--set", f"generator.batch_size={args.batch_size}", "--set", f"generator.steps={args.steps}",
            "--set", "generator.safety_checker=false", "--set", f"task.categories=[{args.categories}]"]  # fmt: skip
    aa = [sys.executable, "-m", "aa_cli.main"]
    subprocess.run([*aa, "run", "--out", str(run), "--generator", "stable-diffusion", *sets, "--until", "prompts"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    from aa_core.data.synthetic import plan

    prompts = [json.loads(line) for line in (run / "prompts.jsonl").read_text().splitlines()]
    slots = plan(prompts, args.images_per_class, 0)
    # the bare loop first, then aa: each pays its own pipeline load and first-call warm-up
    bare = bare_loop(model, slots, args.batch_size, args.steps, root / "bare", device)
    subprocess.run([*aa, "generate", str(run), *sets], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = json.loads((run / "stages.json").read_text())["generate"]["seconds"]
    n = len(slots)
    rate_bare, rate_aa = steady_rate(root / "bare", args.batch_size), steady_rate(run / "source", args.batch_size)
    print(f"{n} images, batch {args.batch_size}, {args.steps} steps, {device}, model {args.model or 'tiny (built here)'}")
    print(f"bare diffusers loop  {rate_bare:8.2f} images/s after the first batch  ({bare:.1f} s in all, loading included)")
    print(f"aa generate          {rate_aa:8.2f} images/s after the first batch  ({ours:.1f} s in all, loading included)")
    print(f"ratio aa / bare      {rate_aa / rate_bare:8.3f}  (aim: >= 0.95)")


def steady_rate(folder: Path, batch_size: int) -> float:
    """Images per second from the end of the first batch to the last image, by the PNGs' times."""
    stamps = sorted(p.stat().st_mtime for p in folder.rglob("*.png"))
    return (len(stamps) - batch_size) / (stamps[-1] - stamps[batch_size - 1])


if __name__ == "__main__":
    main()
