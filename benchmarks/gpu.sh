#!/usr/bin/env bash
# The GPU checks, in one go (a lent GPU's time is short): peak training memory and seconds per step
# of every algorithm at 224 px in fp32 and bf16 (channels-last convolutions, as training builds
# them), the same with the backbone torch.compile'd for DANN and FixMatch, and generation with a
# tiny diffusers pipeline through aa's stable-diffusion generator against the bare pipeline.
#
#   bash benchmarks/gpu.sh [TINY_PIPELINE_DIR]
#
# It needs the project's packages importable (pip install -r requirements-dev.txt, or PYTHONPATH
# as below); the tiny pipeline folder is one tests/tiny_models.py builds (tiny_stable_diffusion).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/plugins/aa-uda:$PWD/plugins/aa-ssl:$PWD/plugins/aa-diffusers${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 benchmarks/memory.py --device cuda --precisions fp32,bf16
python3 benchmarks/memory.py --device cuda --precisions bf16 --only dann,fixmatch --compile
pipeline=${1:-}
if [ -n "$pipeline" ]; then
python3 - "$pipeline" <<'PY'
import sys, time
import torch
from aa_core.api import GeneratorContext
from aa_diffusers.stable_diffusion import StableDiffusionGenerator

path, n, batch = sys.argv[1], 64, 16
prompts = [f"a photo of a thing number {i}" for i in range(n)]
gen = StableDiffusionGenerator(StableDiffusionGenerator.Options(steps=20, safety_checker=False), GeneratorContext(path, [], torch.device("cuda")))
pipe = gen.pipe
def ours():
    return [im for s in range(0, n, batch) for im in gen.generate(prompts[s:s + batch], list(range(s, s + batch)))]
def bare():
    out = []
    for s in range(0, n, batch):
        g = [torch.Generator("cpu").manual_seed(i) for i in range(s, s + batch)]
        with torch.inference_mode():
            out += pipe(prompt=prompts[s:s + batch], num_inference_steps=20, guidance_scale=7.5, generator=g, output_type="pil").images
    return out
rows = {}
for name, fn in (("aa", ours), ("bare", bare), ("aa", ours), ("bare", bare)):
    torch.cuda.synchronize(); t = time.perf_counter(); images = fn(); torch.cuda.synchronize()
    rows.setdefault(name, []).append(n / (time.perf_counter() - t))
    rows[name + "_images"] = images
same = all(list(a.getdata()) == list(b.getdata()) for a, b in zip(rows["aa_images"], rows["bare_images"]))
print(f"| generation, tiny pipeline, {n} images of batch {batch}, 20 steps | aa {max(rows['aa']):.1f} img/s | bare {max(rows['bare']):.1f} img/s "
      f"| ratio {max(rows['aa']) / max(rows['bare']):.2f} | same pixels: {same} | dtype {pipe.unet.dtype} |")
PY
fi
