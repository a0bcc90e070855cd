"""Token classification through the training worker (a subprocess, as the job manager runs it) on a tiny random-init
BERT: sub-word labels, entity-F1 metrics and best checkpoint, task.json, the per-token ONNX graph [N, T, L] with
parity, and the int8 variant judged on entity F1."""

from __future__ import annotations

import json

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
from tuneserve.tasks import TaskParams, get_task


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
