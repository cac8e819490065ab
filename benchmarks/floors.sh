#!/usr/bin/env bash
# Are the dependency floors true? Two environments at the lowest releases the pyprojects admit of
# their direct dependencies (uv's --resolution lowest-direct), each under the tests that reach them:
#
#   core: aa with the plugins that add no dependency of their own (prompters, generators, uda, ssl, glide):
#         torch 2.4.0, torchvision 0.19.0, timm 1.0.3, accelerate 1.0.0, pydantic 2.6.0, pluggy 1.5.0,
#         typer 0.16.0, huggingface-hub 0.24.0, numpy 1.26.0, pillow 10.0.0, ... (printed below);
#   all:  everything requirements-dev.txt installs: diffusers 0.42 asks for huggingface-hub 1.32,
#         which transformers 4.x refuses, hence aa-diffusers' transformers>=5.0; litellm 1.108 asks
#         for pydantic 2.11. This run found diffusers 0.42 failing on torch 2.4 (torch.accelerator,
#         2.6), hence aa-diffusers' torch>=2.6, and matplotlib 3.8 lacking one of glyph's 21 default
#         faces (cmti10, shipped from 3.11), hence aa-generators' matplotlib>=3.11.
#
#   bash benchmarks/floors.sh [ROOT]     (ROOT: where the environments go, default a new temporary folder)
#
# Needs the package index (uv and the floor wheels). torch 2.4.0's wheel brings its CUDA libraries:
# about 3 GB the first time, from uv's cache after that.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-$(mktemp -d)}
mkdir -p "$root"
python3 -m venv "$root/uv" && "$root/uv/bin/pip" install --quiet uv
uv="$root/uv/bin/uv"

# floor NAME REQUIREMENTS...: a venv at ROOT/NAME with the lowest direct releases of what they install
floor() {
  local name=$1 reqs="$root/$1.in"
  shift
  printf '%s\n' "$@" > "$reqs"
  python3 -m venv "$root/$name"
  "$uv" pip compile --quiet --python "$root/$name/bin/python" --resolution lowest-direct "$reqs" -o "$root/$name.txt"
  "$uv" pip install --quiet --python "$root/$name/bin/python" -r "$root/$name.txt" -r "$reqs"
  "$root/$name/bin/python" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
names = "torch torchvision timm accelerate pydantic pluggy stevedore typer click huggingface-hub safetensors numpy pillow diffusers transformers litellm".split()
found = []
for name in names:
    try:
        found.append(f"{name} {version(name)}")
    except PackageNotFoundError:
        pass
print("floors:", ", ".join(found))
EOF
}

floor core "-e .[test]" -e ./plugins/aa-prompters -e ./plugins/aa-generators -e ./plugins/aa-uda -e ./plugins/aa-ssl -e ./plugins/aa-glide
# Left out: the tests that load timm's tiny `test_resnet` (it appeared after 1.0.3), and the one
# that reads the source with `datasets`: pyarrow, which it pulls at its newest, needs numpy 2
"$root/core/bin/python" -m pytest -q -p no:cacheprovider -k "not local_checkpoint and not another_size and not datasets_imagefolder" \
  tests/test_cdtrans.py tests/test_api.py tests/test_dann.py tests/test_mcd.py tests/test_symnets.py tests/test_fixmatch.py \
  tests/test_mixmatch.py tests/test_selection.py tests/test_views.py tests/test_confident_split.py tests/test_mixed_precision.py \
  tests/test_resume.py tests/test_algorithm_maths.py tests/test_config.py tests/test_run_folder.py \
  tests/test_safe_loading.py tests/test_dropout.py tests/test_final_model.py tests/test_end_to_end.py

floor all -r "$PWD/requirements-dev.txt"  # a -r inside a requirements file is read from that file's folder
"$root/all/bin/python" -m pytest -q -p no:cacheprovider tests/test_stable_diffusion.py tests/test_llm_prompter.py tests/test_generators.py tests/test_plugins.py
