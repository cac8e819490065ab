#!/usr/bin/env bash
# The defaults docs/protocol.md lists, re-checked on the digits' dev half (issue 22): each knob
# varied alone around its default (half and double), on the default task (dann + fixmatch),
# seeds 0, 1, 2. Choose on `dev_accuracy`, report `target_accuracy` (`aa compare ROOT`, or each
# member's metrics.json).
#
#   bash benchmarks/defaults.sh [KNOB ...]     (all knobs without one; rerun to resume)
#   KNOB: refine_steps steps source_only_steps images_per_class width hand_share pen
#   AA_DEFAULTS_ROOT=/tmp/grid-defaults (the default) holds the sweeps
#   AA_DEFAULTS_SEEDS=0 runs fewer seeds first; rerunning with the default 0,1,2 adds the others
#
# Config keys are swept under one root, so their members share generation, source-only models
# and adaptations (each knob's default member adopts every stage of the first). The small CNN's
# width and the glyph hand share and pen are constants in code: each alternative runs from a
# copy of its package with the constant changed, put first on the path, under a root of its own
# (fingerprints cover the core's release, not its code, so these runs must share nothing with the others).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${AA_DEFAULTS_ROOT:-/tmp/grid-defaults}
seeds=${AA_DEFAULTS_SEEDS:-0,1,2}
cd "$(mktemp -d)"  # python -m puts the working directory first on the path: not the repository's packages

sweep() { aa sweep "$root" --grid "$1" --seeds "$seeds"; }

# patched NAME PACKAGE_DIR FILE OLD NEW: the default task from a copy of PACKAGE_DIR with OLD -> NEW in FILE
patched() {
  local out="$root-$1" src="$root-$1.src" pkg
  pkg=$(basename "$2")
  rm -rf "$src" && mkdir -p "$src" && cp -r "$repo/$2" "$src/$pkg"
  grep -qF "$4" "$src/$pkg/$3" || { echo "error: '$4' not in $2/$3; update benchmarks/defaults.sh" >&2; exit 1; }
  sed -i "s/$4/$5/" "$src/$pkg/$3"
  PYTHONPATH="$src" python -c "import $pkg, sys; sys.exit(not $pkg.__file__.startswith('$src'))"
  PYTHONPATH="$src" aa sweep "$out" --seeds "$seeds"
}

knob() {
  case $1 in
    refine_steps) sweep train.refine_steps=250,500,1000 ;;
    steps) sweep train.steps=1500,3000,6000 ;;
    source_only_steps) sweep source_only.steps=250,500,1000 ;;
    images_per_class) sweep generator.images_per_class=250,500,1000 ;;
    width)
      patched width16 aa_core models/small_cnn.py "width: int = 32" "width: int = 16"
      patched width64 aa_core models/small_cnn.py "width: int = 32" "width: int = 64" ;;
    hand_share)
      patched hand0.25 plugins/aa-generators/aa_generators style.py '"hand_share": 0.5' '"hand_share": 0.25'
      patched hand0.75 plugins/aa-generators/aa_generators style.py '"hand_share": 0.5' '"hand_share": 0.75' ;;
    pen)
      patched pen2 plugins/aa-generators/aa_generators hand_font.py "PEN = 3" "PEN = 2"
      patched pen4 plugins/aa-generators/aa_generators hand_font.py "PEN = 3" "PEN = 4" ;;
    *) echo "error: unknown knob '$1'; choose refine_steps, steps, source_only_steps, images_per_class, width, hand_share or pen" >&2; exit 2 ;;
  esac
}

for k in "${@:-refine_steps steps source_only_steps images_per_class width hand_share pen}"; do
  for one in $k; do knob "$one"; done
done
