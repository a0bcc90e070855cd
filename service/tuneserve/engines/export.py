"""ONNX export of a fine-tuned text classifier, gated by a parity check against PyTorch.

The graph is one self-contained .onnx file whose inputs are named and ordered as the model's forward() takes them
(input_ids, attention_mask[, token_type_ids]) and whose output is `logits`, with dynamic batch and sequence axes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from transformers import BatchEncoding, PreTrainedTokenizerBase

from tuneserve.engines.training.model import TextClassifier

OPSET = 17
PARITY_TOLERANCE = 1e-4
PARITY_EXAMPLES = 64


class ParityCheckFailed(RuntimeError):
    """ONNX Runtime and PyTorch disagree on the exported model's logits."""


class ExportError(RuntimeError):
    """The exporter produced something the runtime cannot serve as one file."""


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    argmax_agreement: int
    examples: int


@dataclass(frozen=True)
class ExportReport:
    path: Path
    input_names: list[str]
    size_bytes: int
    parity: ParityReport


def export_onnx(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    output_path: Path,
    *,
    example_texts: list[str],
    max_seq_length: int,
) -> ExportReport:
    """Export to output_path, then check parity on example_texts (raise ParityCheckFailed when it fails).

    The model is moved to the CPU in fp32 and put in eval mode (dropout off), as it is served.
    """
    model = model.to("cpu").float().eval()
    input_names = model.input_names(tokenizer)
    examples = _tokenize(tokenizer, _shortest_and_longest(example_texts), max_seq_length, "pt")
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names} | {"logits": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        # NOTE: tracing warns about every Python-level shape check in transformers' masking code; the parity check
        # below is what proves the traced graph generalises to other batch and sequence sizes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        torch.onnx.export(
            model,
            # NOTE: args bind to forward() by position and input_names name them by position: both must follow
            # forward()'s order, never the tokenizer's dict order (input_ids, token_type_ids, attention_mask).
            tuple(examples[name] for name in input_names),
            str(output_path),
            input_names=input_names,
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            # NOTE: the dynamo exporter (torch 2.13's default) writes weights to an external .onnx.data file.
            dynamo=False,
        )
    _check_self_contained(output_path)
    parity = check_parity(output_path, model, tokenizer, example_texts[:PARITY_EXAMPLES], max_seq_length=max_seq_length)
    return ExportReport(output_path, input_names, output_path.stat().st_size, parity)


def check_parity(
    onnx_path: Path,
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    max_seq_length: int,
    tolerance: float = PARITY_TOLERANCE,
    batch_size: int = 16,
) -> ParityReport:
    """Compare ONNX Runtime (CPU) with PyTorch (CPU, fp32, eval) logits on padded batches of texts."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_inputs = [i.name for i in session.get_inputs()]
    torch_inputs = model.input_names(tokenizer)
    max_diff, agree = 0.0, 0
    for start in range(0, len(texts), batch_size):
        batch = _tokenize(tokenizer, texts[start : start + batch_size], max_seq_length, "np")
        onnx_logits = session.run(["logits"], {name: batch[name] for name in onnx_inputs})[0]
        with torch.no_grad():
            torch_logits = model(**{name: torch.from_numpy(batch[name]) for name in torch_inputs}).logits.numpy()
        max_diff = max(max_diff, float(np.abs(onnx_logits - torch_logits).max()))
        agree += int((onnx_logits.argmax(-1) == torch_logits.argmax(-1)).sum())
    report = ParityReport(max_abs_diff=max_diff, argmax_agreement=agree, examples=len(texts))
    if max_diff > tolerance or agree != len(texts):
        raise ParityCheckFailed(
            f"ONNX parity check failed: max |logit diff| {max_diff:.1e} (limit {tolerance:.0e}), "
            f"argmax agreement {agree}/{len(texts)}"
        )
    return report


def _tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_seq_length: int, tensors: str) -> BatchEncoding:
    encoded: BatchEncoding = tokenizer(
        texts, padding=True, truncation=True, max_length=max_seq_length, return_tensors=tensors
    )
    return encoded


def _shortest_and_longest(texts: list[str]) -> list[str]:
    # NOTE: a traced example with padding exercises the attention-mask path, so nothing mask-dependent is
    # constant-folded for the all-ones case.
    if not texts:
        raise ExportError("ONNX export needs at least one example text")
    return [min(texts, key=len), max(texts, key=len)]


def _check_self_contained(path: Path) -> None:
    graph = onnx.load(str(path), load_external_data=False)
    external = [t.name for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ExportError(f"{path.name} keeps {len(external)} tensors in external data files; it must be one file")
    onnx.checker.check_model(graph)
