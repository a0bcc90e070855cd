"""ONNX export of a fine-tuned image model, gated by a parity check against PyTorch.

The graph is one self-contained .onnx file with one input `pixel_values` float32 [N, 3, H, W] (dynamic N; H and W are
the preprocessing's crop, which EfficientNet's static "same" padding was built for) and one output `logits` (the
head's raw outputs, as for text: `Task.parity` judges them).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from tuneserve.engines.export.text import (
    OPSET,
    PARITY_TOLERANCE,
    ExportError,
    ExportReport,
    ParityReport,
    judge_parity,
)
from tuneserve.engines.training.vision import INPUT_NAME, ImageClassifier
from tuneserve.tasks import TaskParams

PARITY_EXAMPLES = 16


def export_image_onnx(
    model: ImageClassifier, output_path: Path, *, examples: np.ndarray, params: TaskParams | None = None
) -> ExportReport:
    """Export to output_path, then check parity on up to PARITY_EXAMPLES of `examples` (preprocessed validation
    images, float32 [N, 3, H, W]) at the task parameters `params`; raise ParityCheckFailed with both numbers when it
    fails."""
    if len(examples) == 0:
        raise ExportError("ONNX export needs at least one example image")
    model = model.to("cpu").float().eval()
    # NOTE: traced with a batch of two so that no batch-size-1 shape is constant-folded into the graph.
    sample = torch.from_numpy(np.concatenate([examples[:1], examples[:1]]))
    with torch.no_grad(), warnings.catch_warnings():
        # NOTE: the static "same" padding slices with steps the folder skips; the parity check below is the proof.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(
            # NOTE: the exporter puts the module back in the mode it found it in afterwards: a wrapper left in train
            # mode would switch the model to training (dropout, batch statistics) for the parity check.
            _LogitsOnly(model).eval(),
            (sample,),
            str(output_path),
            input_names=[INPUT_NAME],
            output_names=["logits"],
            dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            # NOTE: the dynamo exporter (torch 2.13's default) writes weights to an external .onnx.data file.
            dynamo=False,
        )
    graph = onnx.load(str(output_path), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.graph.initializer):
        raise ExportError(f"{output_path.name} keeps tensors in external data files; it must be one file")
    onnx.checker.check_model(graph)
    parity = check_image_parity(output_path, model, examples[:PARITY_EXAMPLES], params=params)
    return ExportReport(output_path, [INPUT_NAME], output_path.stat().st_size, parity)


def check_image_parity(
    onnx_path: Path,
    model: ImageClassifier,
    pixels: np.ndarray,
    *,
    tolerance: float = PARITY_TOLERANCE,
    batch_size: int = 8,
    params: TaskParams | None = None,
) -> ParityReport:
    """Compare ONNX Runtime (CPU) and PyTorch (CPU, fp32, eval) raw outputs: max |diff| <= tolerance and the same
    decisions (`Task.parity` of the model's task)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = model.eval()
    references, exported = [], []
    for start in range(0, len(pixels), batch_size):
        batch = np.ascontiguousarray(pixels[start : start + batch_size], dtype=np.float32)
        exported.append(session.run(["logits"], {INPUT_NAME: batch})[0])
        with torch.no_grad():
            references.append(model(torch.from_numpy(batch)).logits.numpy())
    task = model.task
    return judge_parity(
        np.concatenate(references), np.concatenate(exported), task, params or TaskParams(task=task.name), tolerance
    )


class _LogitsOnly(torch.nn.Module):
    """The classifier's forward without the loss path and the output dataclass, as the exporter wants it."""

    def __init__(self, model: ImageClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(pixel_values).logits
        return logits
