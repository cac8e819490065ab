#!/usr/bin/env bash
# Are the dependency floors true? The lowest releases the pyprojects admit of the libraries whose
# API the code leans on (timm, accelerate, pydantic, pluggy), installed aside and put first on the
# path, under the in-process tests of the algorithms, the data views and the API.
#
#   bash benchmarks/floors.sh            (after pip install -r requirements-dev.txt; needs the package index)
#
# torch and torchvision stay the installed ones: their floor builds are gigabytes of CUDA wheels.
# timm's tiny `test_resnet` appeared after 1.0.3, so the one test that loads it is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
site=$(mktemp -d)
python -m pip install --quiet --no-deps --target "$site" timm==1.0.3 accelerate==1.0.0 pydantic==2.6.0 pydantic-core==2.16.1 pluggy==1.5.0
PYTHONPATH="$site" python -c "import timm, accelerate, pydantic, pluggy; print('floors:', 'timm', timm.__version__, 'accelerate', accelerate.__version__, 'pydantic', pydantic.__version__, 'pluggy', pluggy.__version__)"
PYTHONPATH="$site" python -m pytest -q -p no:cacheprovider -k "not local_checkpoint" \
  tests/test_cdtrans.py tests/test_api.py tests/test_dann.py tests/test_mcd.py tests/test_symnets.py tests/test_fixmatch.py \
  tests/test_mixmatch.py tests/test_selection.py tests/test_views.py tests/test_confident_split.py tests/test_mixed_precision.py \
  tests/test_resume.py
