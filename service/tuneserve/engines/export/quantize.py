"""The INT8 variant of an exported text classifier: dynamic quantisation by ONNX Runtime, then a guard that compares
it with the fp32 graph on the validation set and serves it only if macro F1 drops at most a configured limit.

Both graphs are scored as serving scores them: the same tokenizer call (pad to the longest in the batch, truncate at
max_seq_length) and ONNX Runtime on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from sklearn.metrics import f1_score
from transformers import PreTrainedTokenizerBase

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

    fp32_macro_f1: float
    int8_macro_f1: float
    max_f1_drop: float
    served: bool
    reason: str
    argmax_agreement: int
    examples: int
    max_abs_diff: float  # largest |logit difference| between the two graphs

    @property
    def drop(self) -> float:
        return self.fp32_macro_f1 - self.int8_macro_f1


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
    texts: list[str],
    label_ids: list[int],
    *,
    max_seq_length: int,
    max_f1_drop: float,
    threads: int = 0,
) -> Int8Verdict:
    """Score both graphs on the labelled texts and decide whether the int8 one may be served."""
    if not texts or len(texts) != len(label_ids):
        raise ValueError(f"the guard needs labelled texts: {len(texts)} texts, {len(label_ids)} labels")
    fp32 = onnx_logits(fp32_path, tokenizer, texts, max_seq_length=max_seq_length, threads=threads)
    int8 = onnx_logits(int8_path, tokenizer, texts, max_seq_length=max_seq_length, threads=threads)
    fp32_f1, int8_f1 = macro_f1(label_ids, fp32), macro_f1(label_ids, int8)
    agreement = int((fp32.argmax(-1) == int8.argmax(-1)).sum())
    served, reason = guard(fp32_f1, int8_f1, max_f1_drop)
    return Int8Verdict(
        fp32_macro_f1=fp32_f1,
        int8_macro_f1=int8_f1,
        max_f1_drop=max_f1_drop,
        served=served,
        reason=f"{reason}; predictions agree on {agreement}/{len(texts)} validation texts",
        argmax_agreement=agreement,
        examples=len(texts),
        max_abs_diff=float(np.abs(fp32 - int8).max()),
    )


def guard(fp32_macro_f1: float, int8_macro_f1: float, max_f1_drop: float) -> tuple[bool, str]:
    """Serve the int8 variant only if its macro F1 is at most max_f1_drop below fp32's; say why, with the numbers."""
    drop = fp32_macro_f1 - int8_macro_f1
    scores = f"int8 macro F1 {int8_macro_f1:.4f} vs fp32 {fp32_macro_f1:.4f}: drop {drop:.4f}"
    if drop <= max_f1_drop + _DROP_EPSILON:
        return True, f"{scores} is within the limit {max_f1_drop:.4f}"
    return False, f"{scores} exceeds the limit {max_f1_drop:.4f}; kept on disk for inspection, not served"


def onnx_logits(
    onnx_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    max_seq_length: int,
    threads: int = 0,
) -> np.ndarray:
    """Logits [len(texts), classes] from ONNX Runtime on the CPU, tokenized as serving tokenizes."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    batches = []
    for start in range(0, len(texts), _BATCH_SIZE):
        encoded = tokenizer(
            texts[start : start + _BATCH_SIZE],
            padding=True,
            truncation=True,
            max_length=max_seq_length,
            return_tensors="np",
        )
        feeds = {name: encoded[name].astype(np.int64) for name in input_names}
        batches.append(session.run(["logits"], feeds)[0])
    return np.concatenate(batches)


def macro_f1(label_ids: list[int], logits: np.ndarray) -> float:
    # NOTE: the same average as the Trainer's validation metrics (classes present in truth or predictions).
    return float(f1_score(label_ids, logits.argmax(-1), average="macro", zero_division=0))
