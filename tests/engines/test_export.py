"""ONNX export and its parity gate, on a tiny random-init BERT."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tests.fixtures import build_tiny_bert, make_texts
from tuneserve.engines.export import ParityCheckFailed, check_parity, export_onnx
from tuneserve.engines.training.model import TextClassifier

TEXTS = [text for text, _ in make_texts({"sport": 30, "business": 20, "tech": 14})]


def tiny_classifier(tmp_path: Path, pooling: str | None = "mean") -> tuple[TextClassifier, PreTrainedTokenizerBase]:
    backbone = build_tiny_bert(tmp_path / "tiny-bert", pooling=pooling)
    torch.manual_seed(0)
    model = TextClassifier.from_backbone(str(backbone), 3, dropout=0.1)
    return model, AutoTokenizer.from_pretrained(backbone)


@pytest.mark.parametrize("pooling", ["mean", "cls", None])
def test_export_is_one_file_that_matches_pytorch(tmp_path: Path, pooling: str | None) -> None:
    model, tokenizer = tiny_classifier(tmp_path, pooling)
    report = export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32)
    assert report.parity.max_abs_diff <= 1e-4
    assert report.parity.argmax_agreement == report.parity.examples == 64
    assert report.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    graph = onnx.load(str(tmp_path / "model.onnx"))
    assert [i.name for i in graph.graph.input] == report.input_names
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "tiny-bert"]


def test_reloaded_checkpoint_exports_the_same_logits(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(tmp_path)
    model.save_checkpoint(tmp_path / "checkpoint")
    reloaded = TextClassifier.from_checkpoint(tmp_path / "checkpoint")
    assert reloaded.pooling == "mean"
    export_onnx(reloaded, tokenizer, tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32)
    report = check_parity(tmp_path / "model.onnx", model.eval(), tokenizer, TEXTS, max_seq_length=32)
    assert report.max_abs_diff <= 1e-4


def test_parity_catches_inputs_exported_in_tokenizer_order(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(tmp_path)
    model.eval()
    examples = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    # The classic mistake: the tokenizer's dict order (input_ids, token_type_ids, attention_mask) used both for the
    # positional args and for input_names, so the ONNX input called "token_type_ids" feeds forward()'s mask.
    assert list(examples) == ["input_ids", "token_type_ids", "attention_mask"]
    torch.onnx.export(
        model,
        tuple(examples.values()),
        str(tmp_path / "swapped.onnx"),
        input_names=list(examples),
        output_names=["logits"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in examples} | {"logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    with pytest.raises(ParityCheckFailed, match=r"max \|logit diff\| \S+ \(limit 1e-04\), argmax agreement \d+/64"):
        check_parity(tmp_path / "swapped.onnx", model, tokenizer, TEXTS[:64], max_seq_length=32)
