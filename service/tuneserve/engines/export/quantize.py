"""The INT8 variant of an exported text model: dynamic quantisation by ONNX Runtime, then a guard that compares it
with the fp32 graph on the validation set on the task's own metric (`Task.guard_metric`) and serves it only if that
metric moves at most a configured limit the wrong way:
- a higher-is-better metric (macro F1, micro F1 at the tuned thresholds) may drop at most `max_change` (0.01 = 1
  point);
- a lower-is-better one (RMSE, in the target's units) may rise at most `max_change` times the fp32 value (0.01 = 1%):
  an error has no fixed scale, so an absolute limit would mean something else for every dataset.

Both graphs are scored as serving scores them: the same tokenizer call (pad to the longest in the batch, truncate at
max_seq_length; a cross-encoder's pairs encoded together, a bi-encoder's each text alone), ONNX Runtime on the CPU,
and the task's served outputs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from sklearn.metrics import f1_score
from transformers import PreTrainedTokenizerBase

from tuneserve.engines.export.text import TextInput, tokenize
from tuneserve.engines.export.words import concat_words, first_positions, gather_words
from tuneserve.engines.training.spec import PAIR_INPUT_SUFFIX
from tuneserve.tasks import Task, TaskParams, get_task

# NOTE: MatMul holds a transformer's compute; Gather holds its word embeddings, about half of MiniLM's bytes
# (90 MB -> 23 MB with both, 59 MB with MatMul alone; the same BBC News macro F1 either way). Gemm (the classifier
# head) has no dynamic int8 kernel in ONNX Runtime, and it is tiny. Attention is the fused graph's Q/K/V projection
# (engines/export/text.py), a quarter of each encoder layer's weights: it becomes QAttention.
INT8_OP_TYPES = ("MatMul", "Attention", "Gather")
# NOTE: per-channel weight scales keep MiniLM's logits 4x closer to fp32 (mean |diff| 0.05 vs 0.19 on BBC News) at the
# same speed. ORT's quant_pre_process is not run: it changed no prediction there, and its symbolic shape inference
# fails on our exported graph (and leaves temporary files in the working directory when it does).
INT8_PER_CHANNEL = True
# NOTE: 0.96 - 0.95 is 0.010000000000000009 in floating point; a drop this close to the limit is within it.
_DROP_EPSILON = 1e-9
_BATCH_SIZE = 32


class QuantizationUnsupported(ValueError):
    """Dynamic int8 is the wrong tool for this kind of model."""


@dataclass(frozen=True)
class Int8Verdict:
    """The guard's evidence and decision, as variants.json and the job result report them."""

    metric: str               # the task's guard metric
    fp32_value: float
    int8_value: float
    max_change: float
    served: bool
    reason: str
    argmax_agreement: int
    examples: int
    max_abs_diff: float  # largest |logit difference| between the two graphs
    lower_is_better: bool = False

    @property
    def drop(self) -> float:
        """How far int8 moved the wrong way: a drop in points, or a relative rise for a lower-is-better metric."""
        return _worsening(self.fp32_value, self.int8_value, self.lower_is_better)


def quantize_int8(fp32_path: Path, int8_path: Path, *, modality: str) -> int:
    """Write the dynamically quantised graph (QInt8 weights, uint8 activations quantised per call); return its size."""
    if modality != "text":
        # NOTE: dynamic int8 quantises activations at run time, which pays off in a transformer's large MatMuls but
        # makes CNNs slower on CPU (a quantise/dequantise pair around every Conv). The CNN path is static
        # quantisation calibrated on sample images (quantize_static + a CalibrationDataReader); it is not built
        # because only text backbones train today.
        raise QuantizationUnsupported(
            f"dynamic int8 quantisation is for text transformers; {modality} backbones need static quantisation "
            "with calibration data, which is not available"
        )
    with _without_preprocess_hint():
        quantize_dynamic(
            fp32_path,
            int8_path,
            op_types_to_quantize=list(INT8_OP_TYPES),
            per_channel=INT8_PER_CHANNEL,
            weight_type=QuantType.QInt8,
            # NOTE: ONNX's shape inference cannot type the outputs of com.microsoft ops (the fused graph's
            # SkipLayerNormalization, BiasGelu, Attention), and the quantiser must know the MatMuls after them are fp32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return int8_path.stat().st_size


class _PreprocessHintFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocess_hint() -> Iterator[None]:
    # NOTE: quantize_dynamic logs "Please consider to run pre-processing" on the root logger every time; we chose
    # not to (see INT8_PER_CHANNEL), and the hint would mislead whoever reads the worker log.
    hint = _PreprocessHintFilter()
    logging.getLogger().addFilter(hint)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(hint)


def judge_int8(
    fp32_path: Path,
    int8_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[TextInput],
    targets: Sequence[Any],
    *,
    max_seq_length: int,
    max_f1_drop: float,
    threads: int = 0,
    labels: Sequence[str] = (),
    task: Task | None = None,
    params: TaskParams | None = None,
) -> Int8Verdict:
    """Score both graphs on the validation texts and their targets on the task's guard metric and decide whether the
    int8 one may be served. Without a task, `targets` are class indices of single-label classification."""
    if not texts or len(texts) != len(targets):
        raise ValueError(f"the guard needs labelled texts: {len(texts)} texts, {len(targets)} labels")
    fp32 = onnx_logits(fp32_path, tokenizer, texts, max_seq_length=max_seq_length, threads=threads)
    int8 = onnx_logits(int8_path, tokenizer, texts, max_seq_length=max_seq_length, threads=threads)
    if task is None:
        task, metric = get_task(""), "macro_f1"
        fp32_value, int8_value = macro_f1(list(targets), fp32), macro_f1(list(targets), int8)
    else:
        params = params or TaskParams(task=task.name)
        metric = task.guard_metric
        fp32_value, int8_value = (
            task.metrics(task.outputs(logits, params), targets, labels, params)[metric] for logits in (fp32, int8)
        )
    lower = not task.greater_is_better(metric)
    agreement = int((fp32.argmax(-1) == int8.argmax(-1)).sum())
    served, reason = guard(fp32_value, int8_value, max_f1_drop, metric=metric, lower_is_better=lower)
    return Int8Verdict(
        metric=metric,
        fp32_value=fp32_value,
        int8_value=int8_value,
        max_change=max_f1_drop,
        served=served,
        reason=f"{reason}; predictions agree on {agreement}/{len(texts)} validation texts",
        argmax_agreement=agreement,
        examples=len(texts),
        max_abs_diff=float(np.abs(fp32 - int8).max()),
        lower_is_better=lower,
    )


def guard(
    fp32: float, int8: float, max_change: float, *, metric: str = "macro_f1", lower_is_better: bool = False
) -> tuple[bool, str]:
    """Serve the int8 variant only if its metric is at most max_change worse than fp32's (points, or a relative rise
    for a lower-is-better metric); say why, with the numbers."""
    change = _worsening(fp32, int8, lower_is_better)
    name = _NAMES.get(metric, metric)
    if lower_is_better:
        scores = f"int8 {name} {int8:.4f} vs fp32 {fp32:.4f}: rise {change:.2%}"
        limit = f"{max_change:.2%} of fp32's"
    else:
        scores = f"int8 {name} {int8:.4f} vs fp32 {fp32:.4f}: drop {change:.4f}"
        limit = f"{max_change:.4f}"
    if change <= max_change + _DROP_EPSILON:
        return True, f"{scores} is within the limit {limit}"
    return False, f"{scores} exceeds the limit {limit}; kept on disk for inspection, not served"


def onnx_logits(
    onnx_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[TextInput],
    *,
    max_seq_length: int,
    threads: int = 0,
) -> np.ndarray:
    """Raw outputs [len(texts), width] from ONNX Runtime on the CPU, tokenized as serving tokenizes; for sentences
    of words (token classification), per word [len(texts), W, L] (`export.words`)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    separate = any(name.endswith(PAIR_INPUT_SUFFIX) for name in input_names)  # a bi-encoder's graph
    batches = []
    words = bool(texts) and isinstance(texts[0], list)
    for start in range(0, len(texts), _BATCH_SIZE):
        chunk = texts[start : start + _BATCH_SIZE]
        encoded = tokenize(tokenizer, chunk, max_seq_length, "np", separate_pairs=separate)
        feeds = {name: encoded[name].astype(np.int64) for name in input_names}
        logits = session.run(["logits"], feeds)[0]
        if words:  # NOTE: token classification: each word's logits at its first sub-word [B, W, L]
            positions = [first_positions(encoded.word_ids(row), len(chunk[row])) for row in range(len(chunk))]
            logits = gather_words(logits, positions)
        batches.append(logits)
    return concat_words(batches) if words else np.concatenate(batches)


def macro_f1(label_ids: list[int], logits: np.ndarray) -> float:
    # NOTE: the same average as the Trainer's validation metrics (classes present in truth or predictions).
    return float(f1_score(label_ids, logits.argmax(-1), average="macro", zero_division=0))


def _worsening(fp32: float, int8: float, lower_is_better: bool) -> float:
    if not lower_is_better:
        return fp32 - int8
    return (int8 - fp32) / fp32 if fp32 > 0 else (0.0 if int8 <= fp32 else float("inf"))


_NAMES = {"macro_f1": "macro F1", "micro_f1": "micro F1", "rmse": "RMSE"}
