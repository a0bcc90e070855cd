#!/usr/bin/env bash
# One-shot GPU check (see bench/gpu_check.py): runs from a bare checkout with only the GPU image's packages.
#   bash bench/gpu_check.sh [gpu_check.py options]      PYTHON=... to pick the interpreter (default python3)
# Writes $OUT/gpu_check.json (and gpu_check_worker.log) when OUT is set; prints a summary last.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO/service:$REPO/client${PYTHONPATH:+:$PYTHONPATH}"
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
exec "$PY" "$REPO/bench/gpu_check.py" "$@"
