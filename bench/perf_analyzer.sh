#!/usr/bin/env bash
# Triton's perf_analyzer against tuneserve's Open Inference Protocol endpoint, at concurrency 1, 8 and 32.
#
#   bench/perf_analyzer.sh                       # trains a tiny model (tests/tiny_model.py) in a temp dir first
#   bench/perf_analyzer.sh DATA_DIR MODEL_ID     # a data dir holding a READY model, e.g. the one finetune_bbc.py made
#   CONCURRENCY="1 4" WINDOW_MS=3000 bench/perf_analyzer.sh ...
#
# Each request is one BBC News held-out document (the first 64 of the split serving_concurrency.py uses) as BYTES
# `text` of shape [1, 1], sent by perf_analyzer's synchronous gRPC workers to a `tuneserve serve` process on loopback.
# Prints one line per concurrency level (p50/p99 ms, infer/s) and keeps perf_analyzer's CSV and log in OUT_DIR.
#
# perf_analyzer ships in tritonclient's wheel (`pip install "tritonclient[grpc]==2.41.0"`, the dev extra) and links two
# libraries even on CPU: Debian's `libb64-0d` (apt-get install libb64-0d) and libcudart.so.12 (the dev extra's
# nvidia-cuda-runtime-cu12; this script puts it on LD_LIBRARY_PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python}"
CONCURRENCY="${CONCURRENCY:-1 8 32}"
WINDOW_MS="${WINDOW_MS:-5000}"
# NOTE: perf_analyzer's default (10% between 3 windows) is rarely met on a shared 2-CPU machine; 25% still rejects
# windows disturbed by outside work.
STABILITY="${STABILITY:-25}"
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/perf-analyzer-XXXXXX)}"
mkdir -p "$OUT_DIR"

command -v perf_analyzer >/dev/null || { echo "perf_analyzer not found: pip install 'tritonclient[grpc]==2.41.0'" >&2; exit 1; }
CUDART="$("$PYTHON" -c 'import nvidia.cuda_runtime as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null)" \
  || { echo "libcudart.so.12 not found: pip install nvidia-cuda-runtime-cu12" >&2; exit 1; }
export LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$(command -v perf_analyzer)" | grep -q "not found"; then
  ldd "$(command -v perf_analyzer)" | grep "not found" >&2
  echo "perf_analyzer cannot load the libraries above (libb64: apt-get install libb64-0d)" >&2
  exit 1
fi

if [[ $# -ge 2 ]]; then
  DATA_DIR="$1"; MODEL_ID="$2"
else
  DATA_DIR="$OUT_DIR/data"
  echo "training a tiny model into $DATA_DIR ..." >&2
  MODEL_ID="$(cd "$ROOT" && "$PYTHON" -m tests.tiny_model --data-dir "$DATA_DIR" 2>"$OUT_DIR/tiny_model.log" | tail -1)"
fi

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$PYTHON" -m tuneserve --host 127.0.0.1 --port "$PORT" --metrics-port -1 --data-dir "$DATA_DIR" --log-level WARNING \
  >"$OUT_DIR/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  "$PYTHON" -m tuneserve.healthcheck --target "127.0.0.1:$PORT" --timeout 1 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$OUT_DIR/server.log" >&2; exit 1; }
  sleep 0.5
done

# perf_analyzer's --input-data: one request per entry, cycled through
(cd "$ROOT" && "$PYTHON" - "$OUT_DIR/input.json" <<'EOF'
import json, sys
from bench._common import bbc_news, split
_, test = split(bbc_news())
json.dump({"data": [{"text": [text]} for text, _ in test[:64]]}, open(sys.argv[1], "w"))
EOF
)

tuneserve --target "127.0.0.1:$PORT" models load "$MODEL_ID" >/dev/null  # NOTE: load and warm up before measuring
echo "{\"machine\": \"$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"model\": \"$MODEL_ID\"}"
for c in $CONCURRENCY; do
  perf_analyzer -m "$MODEL_ID" -u "127.0.0.1:$PORT" -i grpc --input-data "$OUT_DIR/input.json" \
    --concurrency-range "$c" --measurement-interval "$WINDOW_MS" --stability-percentage "$STABILITY" \
    -f "$OUT_DIR/c$c.csv" >"$OUT_DIR/c$c.log" 2>&1 || { tail -5 "$OUT_DIR/c$c.log" >&2; continue; }
  "$PYTHON" - "$OUT_DIR/c$c.csv" <<'EOF'
import csv, json, sys
row = next(csv.DictReader(open(sys.argv[1])))
print(json.dumps({"concurrency": int(row["Concurrency"]), "p50_ms": round(int(row["p50 latency"]) / 1000, 2),
                  "p99_ms": round(int(row["p99 latency"]) / 1000, 2),
                  "infer_per_s": round(float(row["Inferences/Second"]), 1)}))
EOF
done
echo "perf_analyzer logs and CSVs: $OUT_DIR" >&2
