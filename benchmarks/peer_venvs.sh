#!/usr/bin/env bash
# The peers of benchmarks/peer.py, each in its own virtual environment on top of aa's: a .pth file
# adds the site-packages of the environment aa is installed in (run this with it active) after the
# new environment's own, as a site directory so that its own .pth files (aa's editable install) count, so torch, timm and aa itself are shared and nothing is installed into
# aa's environment. (--system-site-packages would reach the base interpreter's, not a venv's.)
#
#   bash benchmarks/peer_venvs.sh [ADAPT_VENV] [USB_VENV]   # defaults /tmp/aa-peer-adapt /tmp/aa-peer-usb
#   /tmp/aa-peer-adapt/bin/python benchmarks/peer.py --algorithms dann,mcd
#   /tmp/aa-peer-usb/bin/python benchmarks/peer.py --algorithms fixmatch,mixmatch
#
# pytorch-adapt 0.0.83 pins torchmetrics 0.9.3, which imports pkg_resources (gone from setuptools 81).
# USB (semilearn 0.3.2) requires torch, torchaudio, wandb, aim, transformers, scikit-image and more
# at any version, which would pull a second torch; it is installed with --no-deps, plus the two
# packages its package import reaches (ruamel.yaml for its config reader, scikit-image for MedMNIST,
# progress for its data utilities). peer.py imports only its algorithm classes and base.
set -euo pipefail
adapt=${1:-/tmp/aa-peer-adapt}
usb=${2:-/tmp/aa-peer-usb}
python -c "import aa_core" || { echo "activate the environment aa is installed in first" >&2; exit 2; }
shared=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
layer() {  # a venv that sees aa's environment's packages
  python -m venv "$1"
  echo "import site; site.addsitedir('$shared')" > "$("$1/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/aa-environment.pth"
}
layer "$adapt"
"$adapt/bin/pip" install -q "pytorch-adapt==0.0.83" "setuptools<81"
layer "$usb"
"$usb/bin/pip" install -q --no-deps "semilearn==0.3.2"
"$usb/bin/pip" install -q "ruamel.yaml>=0.17.21" "progress>=1.6" "scikit-image>=0.19.3"
"$usb/bin/python" "$(dirname "$0")/peer_usb.py"
echo "peers ready: $adapt (pytorch-adapt), $usb (USB)"
