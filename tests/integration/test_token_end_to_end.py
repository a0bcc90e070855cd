"""Token classification end to end through the real client on a real server: a CoNLL upload, FineTune of a tiny
random-init BERT (with the frozen and scratch baselines), Predict on raw text (entities whose text is the input's
characters at their offsets), Evaluate on the uploaded rows (entity figures, per type, errors) and the Open Inference
Protocol `entities` output through the real tritonclient."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tests.integration.conftest import QUICK
from tests.tagging_fixtures import NER_LABELS, conll_text, ner_sentences
from tuneserve_client import Client, JobState
from tuneserve_client.cli.main import main
from tuneserve_client.proto.tuneserve.v1.common_pb2 import Task

PROBE = Path(__file__).with_name("tritonclient_probe.py")
TEXTS = ["Ada Lovelace lives in  Paris.", "in New York, Grace sang 🎉 today", "Zoë visited Rome"]


def test_conll_upload_fine_tune_predict_evaluate_and_open_inference(
    server: ServerThread, client: Client, tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.conll"
    path.write_text(conll_text(ner_sentences(48)))
    dataset = client.upload_dataset(path)
    assert dataset.task == Task.TASK_TOKEN_CLASSIFICATION and list(dataset.labels) == NER_LABELS

    job = client.fine_tune(dataset.id, backbone=str(tiny_bert), hyperparameters={**QUICK, "max_steps": 12},
                           baselines=["frozen", "scratch"])
    done = client.wait_for_job(job.id, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
    assert done.task == Task.TASK_TOKEN_CLASSIFICATION
    result = done.result
    assert result.best_metric_name == "entity_f1"
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"} <= set(result.validation_metrics)
    assert {entry.kind for entry in result.baselines} == {"frozen", "scratch"}
    assert "entity F1" in result.transfer_verdict

    predictions = client.predict(done.model_id, TEXTS).predictions
    assert len(predictions) == len(TEXTS) and any(p.entities for p in predictions)   # 12 steps find some
    for text, prediction in zip(TEXTS, predictions, strict=True):
        for entity in prediction.entities:
            assert text[entity.start:entity.end] == entity.text and entity.type in {"PER", "LOC"}
            assert 0.0 < entity.score <= 1.0

    # the CLI against the same server: --json carries the same entities, the table shows the TEXT
    assert main(["--target", server.target, "--json", "predict", "--model", done.model_id, *TEXTS]) == 0
    shown = json.loads(capsys.readouterr().out)["predictions"]
    assert [p.get("entities", []) for p in shown] == [
        [{"type": e.type, "text": e.text, "start": e.start, "end": e.end, "score": pytest.approx(e.score)}
         for e in p.entities] for p in predictions
    ]
    assert main(["--target", server.target, "predict", "--model", done.model_id, TEXTS[2]]) == 0
    assert "START-END" in capsys.readouterr().out

    report = client.evaluate(done.model_id, dataset.id).report
    assert report.task == Task.TASK_TOKEN_CLASSIFICATION and report.num_examples == 48
    assert {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"} <= set(report.metrics)
    assert [c.label for c in report.per_class] == ["LOC", "PER"]
    assert list(report.confusion_matrix.labels) == ["LOC", "PER", "O"]
    errors = report.entity_errors
    assert errors.num_missed >= len(errors.missed) and errors.num_spurious >= len(errors.spurious)

    command = [sys.executable, str(PROBE), server.target, done.model_id, "infer_raw",
               "--texts", json.dumps(TEXTS), "--pairs", "[]"]
    seen = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert seen.returncode == 0, seen.stderr
    out = json.loads(seen.stdout)["infer_raw"]["outputs"]["entities"]
    assert out["datatype"] == "BYTES" and out["shape"][0] == len(TEXTS)
    for text, data, prediction in zip(TEXTS, out["data"], predictions, strict=True):
        found = json.loads(data)
        assert [(e["type"], e["start"], e["end"]) for e in found] == [
            (e.type, e.start, e.end) for e in prediction.entities
        ]
        assert all(text[e["start"]:e["end"]] == e["text"] for e in found)
