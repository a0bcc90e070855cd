"""`tuneserve jobs report` and `tuneserve evaluate` for multi-label and regression models: the sections of their own
(per-label table and thresholds; scatter, residual histogram and summary), the comparison by the task's metrics and
test, and the evaluate tables."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from tuneserve_client import EvaluateResponse, Job, JobState, Model, ModelVersion
from tuneserve_client.cli.main import main
from tuneserve_client.cli.render_evaluation import evaluation_response
from tuneserve_client.cli.report.html import ReportInput, render_html
from tuneserve_client.proto.tuneserve.v1.common_pb2 import TASK_MULTI_LABEL, TASK_REGRESSION

from .conftest import FakeTuneServe
from .test_report import EVIL, SECTIONS, parse_report, png_size, table_with

LABELS = ["aid", EVIL, "water"]
THRESHOLDS = {"aid": 0.35, EVIL: 0.5, "water": 0.72}


def multi_label_job() -> Job:
    curve = [{"step": 8, "epoch": 1.0, "train_loss": 0.6, "validation_loss": 0.5,
              "metrics": {"micro_f1": 0.61, "macro_f1": 0.55, "samples_f1": 0.6}}]  # fmt: skip
    return Job(
        id="job-ml", state=JobState.JOB_STATE_SUCCEEDED, task=TASK_MULTI_LABEL, model_id="model-ml", model_version=1,
        result={
            "validation_metrics": {"micro_f1": 0.61, "macro_f1": 0.55, "subset_accuracy": 0.4}, "learning_curve": curve,
            "best_metric_name": "micro_f1", "best_metric": 0.61, "best_step": 8,
            "label_thresholds": {label: 0.5 for label in LABELS},
            "variant_metric": "micro_f1", "variant_metrics": {"fp32": 0.61, "int8": 0.6},
            "baselines": [{"kind": "frozen", "model_id": "model-f", "validation_metrics": {"micro_f1": 0.3,
                                                                                          "subset_accuracy": 0.1}}],
        },
    )  # fmt: skip


def multi_label_evaluation() -> EvaluateResponse:
    metrics = {"micro_f1": 0.8, "micro_precision": 0.75, "micro_recall": 0.857, "macro_f1": 0.7, "samples_f1": 0.78,
               "subset_accuracy": 0.6, "hamming_loss": 0.1}  # fmt: skip
    per_label = [{"label": label, "precision": 0.75, "recall": 0.6, "f1": 0.6667, "support": 5 + i}
                 for i, label in enumerate(LABELS)]  # fmt: skip
    report = {"model_id": "model-ml", "model_version": 1, "dataset_id": "ds-test", "num_examples": 20,
              "task": TASK_MULTI_LABEL, "metrics": metrics, "per_class": per_label, "macro_f1": 0.7,
              "num_unknown_labels": 2, "runtime": "onnxruntime"}  # fmt: skip
    compared = {"model_id": "model-f", "model_version": 1, "task": TASK_MULTI_LABEL,
                "metrics": {"micro_f1": 0.5, "subset_accuracy": 0.2}}  # fmt: skip
    comparison = {"model_id": "model-f", "model_version": 1, "test": "mcnemar-holm", "p_value": 0.0039,
                  "only_first_correct": 9, "only_second_correct": 1, "significant": True,
                  "verdict": "fine-tuning the backbone helped: ... McNemar per label, Holm-corrected p=0.0039 < 0.05",
                  "deltas": [{"metric": "micro_f1", "delta": 0.3}, {"metric": "subset_accuracy", "delta": 0.4}]}
    return EvaluateResponse(report=report, compared=[compared], comparisons=[comparison])  # fmt: skip


def regression_evaluation() -> EvaluateResponse:
    points = [{"true_value": i / 10, "predicted": i / 10 + (0.3 if i % 3 else -0.2)} for i in range(60)]
    residuals = {"mean": 0.13, "std": 0.24, "median_abs": 0.3, "p90_abs": 0.3, "max_abs": 0.3}
    metrics = {"rmse": 1.27, "mae": 0.27, "r2": 0.97, "pearson": 0.99, "spearman": 0.98}
    report = {"model_id": "model-r", "model_version": 2, "dataset_id": "ds-r", "num_examples": 80,
              "task": TASK_REGRESSION, "metrics": metrics, "residuals": residuals, "points": points}  # fmt: skip
    compared = {"model_id": "model-s", "model_version": 1, "task": TASK_REGRESSION,
                "metrics": {"rmse": 2.5, "spearman": 0.4}}  # fmt: skip
    comparison = {"model_id": "model-s", "model_version": 1, "test": "wilcoxon", "p_value": 0.002,
                  "only_first_correct": 70, "only_second_correct": 10, "significant": True,
                  "verdict": "transfer helped: ... (RMSE 1.2700 vs 2.5000, -1.2300; ... Wilcoxon ...)",
                  "deltas": [{"metric": "rmse", "delta": -1.23}, {"metric": "spearman", "delta": 0.58}]}
    return EvaluateResponse(report=report, compared=[compared], comparisons=[comparison])  # fmt: skip


def test_multi_label_report_has_per_label_figures_and_the_versions_thresholds() -> None:
    model = Model(id="model-ml", versions=[ModelVersion(version=1, label_thresholds=THRESHOLDS)])
    data = ReportInput(job=multi_label_job(), evaluation=multi_label_evaluation(), model=model)
    parsed = parse_report(render_html(data))

    assert set(parsed.sections) == SECTIONS | {"thresholds", "test-evaluation"}
    # learning curve, thresholds, baselines, test per-label bars, test comparison
    assert len(parsed.images) == 5
    for src in parsed.images:
        png_size(src)
    assert "script" not in parsed.tags and parsed.text.count(EVIL) >= 2
    # the model version's thresholds, not the job result's 0.5s
    assert table_with(parsed, "label")[1:] == [[EVIL, "0.50"], ["aid", "0.35"], ["water", "0.72"]]
    per_label = next(t for t in parsed.tables if t[0] == ["label", "precision", "recall", "f1", "support"])
    assert per_label[2] == [EVIL, "0.7500", "0.6000", "0.6667", "6"]
    assert ["subset accuracy", "0.6000"] in next(t for t in parsed.tables if ["hamming loss", "0.1000"] in t)
    baselines = table_with(parsed, "run")
    assert baselines[0] == ["run", "model", "validation micro_f1", "validation subset_accuracy", "train seconds"]
    assert baselines[2][:4] == ["frozen", "model-f", "0.3000", "0.1000"]
    comparison = table_with(parsed, "compared model")
    assert comparison[0] == ["compared model", "micro_f1", "Δ micro_f1", "subset_accuracy", "Δ subset_accuracy",
                             "only fine-tuned right", "only compared right", "p (McNemar per label, Holm)",
                             "significant"]  # fmt: skip
    assert comparison[1] == ["model-f v1", "0.5000", "+0.3000", "0.2000", "+0.4000", "9", "1", "0.0039", "yes"]
    assert "Holm-corrected" in parsed.text and "int8 validation micro_f1" in parsed.text
    assert "no per-class validation figures" in parsed.text  # a multi-label job has per-label figures to miss


def test_multi_label_thresholds_fall_back_to_the_job_result() -> None:
    parsed = parse_report(render_html(ReportInput(job=multi_label_job())))
    assert table_with(parsed, "label")[1:] == [[EVIL, "0.50"], ["aid", "0.50"], ["water", "0.50"]]
    assert "test-evaluation" not in parsed.sections


def test_multi_label_report_shows_the_platt_scaling_of_each_label() -> None:
    job = multi_label_job()
    job.result.calibration.CopyFrom(type(job.result.calibration)(
        temperature=[1.5, 1.0, 0.75], bias=[-2.0, -0.5, 0.25], ece_before=0.21, ece_after=0.04, nll_before=0.6,
        nll_after=0.35,
    ))
    parsed = parse_report(render_html(ReportInput(job=job)))
    assert "calibration" in parsed.sections and "Platt scaling" in parsed.text
    figures = {row[0]: row[1] for row in table_with(parsed, "temperature")}
    assert (figures["temperature"], figures["bias"]) == ("1.500 1.000 0.750", "-2.000 -0.500 0.250")
    assert figures["validation ECE"] == "0.2100 before, 0.0400 after"


def test_regression_report_has_scatter_residuals_and_the_wilcoxon_comparison() -> None:
    job = Job(id="job-r", state=JobState.JOB_STATE_SUCCEEDED, task=TASK_REGRESSION, model_id="model-r", model_version=2,
              result={"validation_metrics": {"rmse": 1.3, "spearman": 0.97}, "best_metric_name": "rmse",
                      "baselines": [{"kind": "scratch", "model_id": "model-s",
                                     "validation_metrics": {"rmse": 2.4, "spearman": 0.3}}]})  # fmt: skip
    page = render_html(ReportInput(job=job, evaluation=regression_evaluation()))
    parsed = parse_report(page)

    assert set(parsed.sections) == SECTIONS | {"test-evaluation"}  # no thresholds
    # baselines, test scatter, test residual histogram, test comparison
    assert len(parsed.images) == 4
    for src in parsed.images:
        png_size(src)
    assert 'alt="predicted vs true: Evaluation on dataset ds-r"' in page and 'alt="residual histogram: ' in page
    assert ["r²", "0.9700"] in next(t for t in parsed.tables if ["rmse", "1.2700"] in t)
    residuals = table_with(parsed, "residual (predicted - true)")
    assert residuals[1] == ["all rows", "+0.1300", "0.2400", "0.3000", "0.3000", "0.3000"]
    comparison = table_with(parsed, "compared model")
    assert comparison[0][1:5] == ["rmse", "Δ rmse", "spearman", "Δ spearman"]
    assert comparison[0][5:8] == ["only fine-tuned closer", "only compared closer", "p (Wilcoxon)"]
    assert comparison[1] == ["model-s v1", "2.5000", "-1.2300", "0.4000", "+0.5800", "70", "10", "0.002", "yes"]
    assert "per-class" not in parsed.text and "confusion" not in parsed.text


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_command_reads_a_multi_label_models_thresholds(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, tmp_path: Path
) -> None:
    fake.final_job = multi_label_job()
    fake.model = Model(id="model-ml", versions=[ModelVersion(version=1, label_thresholds=THRESHOLDS)])
    out_file = tmp_path / "r.html"
    code, _, err = run(capsys, "--target", fake.target, "jobs", "report", "job-ml", "--out", str(out_file))
    assert (code, err) == (0, "")
    assert table_with(parse_report(out_file.read_text()), "label")[2] == ["aid", "0.35"]


def rendered(response: EvaluateResponse) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    evaluation_response(console, response)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(text, str)
    return text


def test_evaluate_shows_multi_label_metrics_per_label_and_the_comparison() -> None:
    out = rendered(multi_label_evaluation())
    assert "micro:           precision 0.7500  recall 0.8570  f1 0.8000" in out
    for line in ("samples f1:      0.7800", "subset accuracy: 0.6000", "hamming loss:    0.1000", "macro f1:        0.7000"):
        assert line in out
    assert "20 examples, 2 with labels the model does not know" in out and "confusion matrix" not in out
    assert "water" in out and "0.6667" in out  # the per-label table
    assert "P (MCNEMAR, HOLM)" in out and "Δ MICRO F1" in out and "ONLY IT RIGHT" in out
    assert "model-f v1: fine-tuning the backbone helped" in out


def test_evaluate_shows_regression_metrics_and_residuals() -> None:
    out = rendered(regression_evaluation())
    for line in ("rmse:      1.2700", "mae:       0.2700", "r²:        0.9700", "pearson:   0.9900",
                 "spearman:  0.9800"):  # fmt: skip
        assert line in out
    assert "mean +0.1300  std 0.2400  |r| median 0.3000  p90 0.3000  max 0.3000" in out
    assert "LABEL" not in out and "confusion matrix" not in out
    assert "P (WILCOXON)" in out and "ONLY IT CLOSER" in out and "-1.2300" in out


def test_evaluate_keeps_the_classification_tables() -> None:
    response = EvaluateResponse(report={"model_id": "m", "accuracy": 0.9, "per_class": [{"label": "neg"}],
                                        "confusion_matrix": {"labels": ["neg"], "rows": [{"counts": [3]}]}})
    out = rendered(response)
    assert "accuracy: 0.9000" in out and "confusion matrix" in out and "weighted" in out
