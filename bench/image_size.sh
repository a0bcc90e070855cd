#!/usr/bin/env bash
# The size of what the CPU image installs: a fresh venv with `pip install -c constraints-cpu.txt ".[server,cpu]"`
# (the Dockerfile's builder-cpu step, without the base image), then `du` of the venv and of its biggest packages.
# Docker here can pull no base image, so this is the figure to compare; the image adds python:3.11-slim (~130 MB).
#
#   nice -n 10 bench/image_size.sh [VENV_DIR]        # default /tmp/tuneserve-image-size; removed and rebuilt
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-/tmp/tuneserve-image-size}"
PYTHON="${PYTHON:-python3.11}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# --no-cache-dir: the image's layer holds no pip cache either (its cache is a BuildKit mount).
start=$(date +%s)
# (This machine's pip config lists local indexes that may be missing; their warnings are dropped.)
"$VENV/bin/pip" install --quiet --no-cache-dir -c "$ROOT/constraints-cpu.txt" "$ROOT[server,cpu]" 2>&1 \
    | { grep -v "^WARNING: Location 'file://" || true; }
end=$(date +%s)
# Byte-compiled files count too: the Dockerfile's `python -c "import ..."` check writes some of them.
"$VENV/bin/python" -c "import onnxruntime, torch, tuneserve.server" >/dev/null

echo "install time: $((end - start)) s"
echo "torch: $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
echo "venv total:  $(du -sh "$VENV" | cut -f1)   ($(du -sb "$VENV" | cut -f1) bytes)"
echo "site-packages, biggest 15:"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
du -sm "$SITE"/* | sort -rn | head -15 | awk '{printf "  %6d MB  %s\n", $1, $2}' | sed "s#$SITE/##"
echo "packages installed: $("$VENV/bin/pip" list --format=freeze | wc -l)"
