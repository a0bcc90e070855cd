"""The CLI and the HTML report for token-classification models: `tuneserve predict` prints one row per entity (text,
type, start-end, score) and `--json` carries the entities; `tuneserve evaluate` shows entity precision/recall/F1,
token accuracy, the per-type table, the confusion of types and missed/spurious entities; `tuneserve jobs report`
has the per-type table, the type confusion and the missed and spurious examples."""

from __future__ import annotations

import json

import pytest

from tuneserve_client import EvaluateResponse, Job, JobState
from tuneserve_client.cli.main import main
from tuneserve_client.cli.report.html import ReportInput, render_html
from tuneserve_client.proto.tuneserve.v1.common_pb2 import TASK_TOKEN_CLASSIFICATION
from tuneserve_client.proto.tuneserve.v1.prediction_pb2 import PredictResponse

from .conftest import FakeTuneServe
from .test_report import EVIL, SECTIONS, parse_report, png_size, table_with
from .test_report_tasks import rendered

TEXT = "Ada Lovelace lives in  Paris."


def token_answer() -> PredictResponse:
    entities = [{"type": "PER", "text": "Ada Lovelace", "start": 0, "end": 12, "score": 0.91},
                {"type": "LOC", "text": "Paris", "start": 23, "end": 28, "score": 0.875}]  # fmt: skip
    return PredictResponse(model_id="model-1", model_version=1,
                           predictions=[{"entities": entities}, {"entities": []}])  # fmt: skip


def token_evaluation() -> EvaluateResponse:
    metrics = {"entity_f1": 0.8, "entity_precision": 0.75, "entity_recall": 0.857, "token_accuracy": 0.93}
    per_type = [{"label": "LOC", "precision": 0.8, "recall": 0.9, "f1": 0.8471, "support": 10},
                {"label": EVIL, "precision": 0.7, "recall": 0.8, "f1": 0.7467, "support": 7}]  # fmt: skip
    matrix = {"labels": ["LOC", EVIL, "O"], "rows": [{"counts": [9, 0, 1]}, {"counts": [1, 5, 1]},
                                                      {"counts": [2, 1, 0]}]}  # fmt: skip
    errors = {"missed": [{"row": 3, "type": EVIL, "start": 0, "end": 2, "text": "Ada Lovelace", "other": ""}],
              "spurious": [{"row": 5, "type": "LOC", "start": 4, "end": 5, "text": "Turing", "other": f"{EVIL} 'Turing'"}],
              "num_missed": 2, "num_spurious": 3, "num_wrong_type": 1}  # fmt: skip
    report = {"model_id": "model-t", "model_version": 1, "dataset_id": "ds-ner", "num_examples": 40,
              "task": TASK_TOKEN_CLASSIFICATION, "metrics": metrics, "per_class": per_type, "confusion_matrix": matrix,
              "entity_errors": errors, "runtime": "onnxruntime"}  # fmt: skip
    compared = {"model_id": "model-s", "model_version": 1, "task": TASK_TOKEN_CLASSIFICATION,
                "metrics": {"entity_f1": 0.4, "token_accuracy": 0.8}}  # fmt: skip
    comparison = {"model_id": "model-s", "model_version": 1, "test": "randomization", "p_value": 0.001,
                  "only_first_correct": 20, "only_second_correct": 2, "significant": True,
                  "verdict": "transfer helped: ... approximate randomization on entity F1 ...",
                  "deltas": [{"metric": "entity_f1", "delta": 0.4}, {"metric": "token_accuracy", "delta": 0.13}]}
    return EvaluateResponse(report=report, compared=[compared], comparisons=[comparison])  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_prints_one_row_per_entity_and_json_has_them(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe
) -> None:
    fake.predict_answer = token_answer()
    fake.model.task = TASK_TOKEN_CLASSIFICATION
    code, out, err = run(capsys, "--target", fake.target, "predict", "--model", "model-1", TEXT, "no names here")
    assert (code, err) == (0, "")
    assert all(column in out for column in ("TEXT", "ENTITY", "TYPE", "START-END", "SCORE"))
    lines = out.splitlines()
    assert any("Ada Lovelace" in line and "PER" in line and "0-12" in line and "0.910" in line for line in lines)
    assert any("Paris" in line and "LOC" in line and "23-28" in line and "0.875" in line for line in lines)
    assert any(line.startswith("no names here") and line.split()[-1] == "-" for line in lines)
    assert TEXT[23:28] == "Paris"
    code, out, _ = run(capsys, "--target", fake.target, "--json", "predict", "--model", "model-1", TEXT, "x")
    predictions = json.loads(out)["predictions"]
    assert predictions[0]["entities"][1] == {"type": "LOC", "text": "Paris", "start": 23, "end": 28,
                                             "score": pytest.approx(0.875)}  # fmt: skip


def test_evaluate_shows_entity_figures_types_and_errors() -> None:
    out = rendered(token_evaluation())
    assert "entity:         precision 0.7500  recall 0.8570  f1 0.8000  (exact span and type)" in out
    assert "token accuracy: 0.9300" in out and "40 sentences" in out
    assert "LOC" in out and "0.8471" in out                     # per type
    assert "confusion matrix" in out and "O: no entity there" in out
    assert "missed 2, spurious 3, wrong type 1" in out
    assert "Ada Lovelace" in out and "Turing" in out and "SPURIOUS" in out and "MISSED" in out
    assert "P (RANDOMIZATION)" in out and "ONLY IT HIGHER F1" in out and "Δ ENTITY F1" in out


def test_report_has_per_type_table_type_confusion_and_errors() -> None:
    job = Job(id="job-t", state=JobState.JOB_STATE_SUCCEEDED, task=TASK_TOKEN_CLASSIFICATION, model_id="model-t",
              model_version=1,
              result={"validation_metrics": {"entity_f1": 0.8, "token_accuracy": 0.9}, "best_metric_name": "entity_f1",
                      "baselines": [{"kind": "scratch", "model_id": "model-s",
                                     "validation_metrics": {"entity_f1": 0.3, "token_accuracy": 0.7}}]})  # fmt: skip
    page = render_html(ReportInput(job=job, evaluation=token_evaluation()))
    parsed = parse_report(page)
    assert set(parsed.sections) == SECTIONS | {"test-evaluation"}
    for src in parsed.images:
        png_size(src)
    assert "script" not in parsed.tags
    per_type = table_with(parsed, "entity type")
    assert per_type[2] == [EVIL, "0.7000", "0.8000", "0.7467", "7"]
    confusion = table_with(parsed, "true \\ predicted")
    assert confusion[0] == ["true \\ predicted", "LOC", EVIL, "O"] and confusion[2] == [EVIL, "1", "5", "1"]
    errors = [t for t in parsed.tables if t[0] == ["row", "type", "words", "text", "the other side"]]
    assert errors[0][1] == ["3", EVIL, "0-2", "Ada Lovelace", "nothing"]
    assert errors[1][1] == ["5", "LOC", "4-5", "Turing", f"{EVIL} 'Turing'"]
    assert "missed (true entities no prediction has exactly): the first 1 of 2" in parsed.text
    comparison = table_with(parsed, "compared model")
    assert comparison[0][5:8] == ["only fine-tuned higher sentence F1", "only compared higher sentence F1",
                                  "p (randomization)"]  # fmt: skip
    assert table_with(parsed, "run")[0][2:4] == ["validation entity_f1", "validation token_accuracy"]
