"""FineTune of every task through the real client and server on tiny random-init backbones: the job takes the
dataset's task and input shape, resolves its metric, trains, tunes and exports (text pairs as a cross- or a
bi-encoder, the bi-encoder's served values the graph's and symmetric in the two texts); the Job, its result and the model
(and its versions) say what they are; baselines and the transfer verdict on the task's metric.

Datasets are stored as core/data stores an upload (`task_datasets.store_dataset`); `test_uploaded_*` upload the same
rows through UploadDataset and need the upload parser of the new tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from tests.conftest import ServerThread
from tests.integration.conftest import QUICK
from tests.integration.task_datasets import store_dataset
from tests.task_fixtures import IMAGE_TAGS, TAGS, multi_label_rows, pair_rows, regression_rows, write_image_task_dataset
from tuneserve.engines.export.quantize import onnx_logits
from tuneserve.tasks import TaskParams, get_task
from tuneserve_client import Client, InvalidArgument, JobState
from tuneserve_client.proto.tuneserve.v1.common_pb2 import Task

SUCCEEDED = JobState.JOB_STATE_SUCCEEDED
BUDGET = {**QUICK, "max_steps": 16}


def version_dir(server: ServerThread, model_id: str, version: int = 1) -> Path:
    return Path(server.settings.storage.data_dir) / "models" / model_id / str(version)


def train(client: Client, dataset_id: str, backbone: Path, **options: Any) -> Any:
    job = client.fine_tune(dataset_id, backbone=str(backbone), hyperparameters={**BUDGET, **options.pop("hp", {})},
                           **options)
    done = client.wait_for_job(job.id, timeout=300)
    assert done.state == SUCCEEDED, done.error
    return done


def test_multi_label_job_tunes_thresholds_and_reports_them(
    server: ServerThread, client: Client, tiny_bert: Path
) -> None:
    dataset = store_dataset(server, multi_label_rows(80), task="multi_label")
    done = train(client, dataset.id, tiny_bert, baselines=["frozen"])
    assert (done.task, done.text_pairs) == (Task.TASK_MULTI_LABEL, False)
    assert done.hyperparameters.metric_for_best_model == "micro_f1"
    result = done.result
    assert result.best_metric_name == "micro_f1" and result.variant_metric == "micro_f1"
    assert set(result.label_thresholds) == set(TAGS)
    assert {"micro_f1", "samples_f1", "subset_accuracy", "hamming_loss"} <= set(result.validation_metrics)
    params = TaskParams.load(version_dir(server, done.model_id))
    assert dict(zip(TAGS, params.thresholds, strict=True)) == pytest.approx(dict(result.label_thresholds))
    # McNemar on subset correctness, bounded by the subset accuracies of the same validation rows
    assert "(validation micro F1 " in result.transfer_verdict
    assert f"of the same {result.validation_examples} rows" in result.transfer_verdict

    model = client.get_model(done.model_id)
    assert (model.task, model.text_pairs, list(model.labels)) == (Task.TASK_MULTI_LABEL, False, TAGS)
    version = model.versions[0]
    assert version.variant_metric == "micro_f1"
    assert dict(version.variant_metrics) == pytest.approx(dict(result.variant_metrics))
    assert dict(version.label_thresholds) == pytest.approx(dict(result.label_thresholds))
    frozen = next(m for m in client.list_models().models if m.kind == "frozen")
    assert frozen.task == Task.TASK_MULTI_LABEL


def test_regression_job_keeps_the_scaler_and_judges_on_rmse(
    server: ServerThread, client: Client, tiny_bert: Path
) -> None:
    dataset = store_dataset(server, regression_rows(64), task="regression")
    done = train(client, dataset.id, tiny_bert, baselines=["scratch"], hp={"regression_loss": "huber"})
    assert done.task == Task.TASK_REGRESSION
    assert (done.hyperparameters.metric_for_best_model, done.hyperparameters.regression_loss) == ("rmse", "huber")
    result = done.result
    assert result.best_metric_name == "rmse" and result.variant_metric == "rmse" and not result.label_thresholds
    assert {"rmse", "mae", "r2", "pearson", "spearman"} <= set(result.validation_metrics)
    assert "(validation RMSE " in result.transfer_verdict and "Wilcoxon" in result.transfer_verdict
    params = TaskParams.load(version_dir(server, done.model_id))
    assert 5000 < params.target_mean < 8000 and params.target_std > 500   # the targets' units: thousands
    assert client.get_model(done.model_id).versions[0].variant_metric == "rmse"


@pytest.mark.parametrize("regression", [False, True], ids=["classification", "regression"])
def test_pair_jobs_train_cross_encoders(server: ServerThread, client: Client, tiny_bert: Path, regression: bool) -> None:
    task = "regression" if regression else "classification"
    dataset = store_dataset(server, pair_rows(48, regression=regression), task=task, text_pairs=True)
    done = train(client, dataset.id, tiny_bert)
    assert done.text_pairs is True
    model = client.get_model(done.model_id)
    assert model.text_pairs is True
    assert TaskParams.load(version_dir(server, done.model_id)).text_pairs is True


def test_a_bi_encoder_pair_job_serves_the_graphs_symmetric_values(
    server: ServerThread, client: Client, tiny_bert: Path
) -> None:
    dataset = store_dataset(server, pair_rows(48, regression=True), task="regression", text_pairs=True)
    done = train(client, dataset.id, tiny_bert, hp={"pair_encoding": "bi", "refit": "true"})
    assert done.hyperparameters.pair_encoding == "bi" and done.result.parity_max_abs_diff <= 1e-4
    assert done.result.refit, "the served model is a fresh bi-encoder, its head started at the zero-shot fit too"
    directory = version_dir(server, done.model_id)
    params = TaskParams.load(directory)
    assert (params.text_pairs, params.pair_encoding) == (True, "bi")
    texts, pairs = ["goal match team", "market profit bank tax"], ["coach league cup", "goal match team"]
    served = [p.value for p in client.predict(done.model_id, texts, text_pairs=pairs).predictions]
    swapped = [p.value for p in client.predict(done.model_id, pairs, text_pairs=texts).predictions]
    tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    logits = onnx_logits(directory / "model.onnx", tokenizer, list(zip(texts, pairs, strict=True)), max_seq_length=32)
    graph = get_task("regression").outputs(logits, params)[:, 0]
    assert served == pytest.approx(graph.tolist(), abs=1e-4)
    assert swapped == pytest.approx(served, abs=1e-4), "cosine(u, v) = cosine(v, u)"
    assert served[0] != pytest.approx(served[1], abs=1e-6)


def test_a_bi_encoder_of_single_texts_is_refused(server: ServerThread, client: Client, tiny_bert: Path) -> None:
    dataset = store_dataset(server, regression_rows(40), task="regression")
    with pytest.raises(InvalidArgument, match=r"hyperparameters.pair_encoding=bi needs a dataset of text pairs"):
        client.fine_tune(dataset.id, backbone=str(tiny_bert), hyperparameters={"pair_encoding": "bi"})
    assert client.list_jobs().jobs == []


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_image_tasks(server: ServerThread, client: Client, tiny_efficientnet: Path, tmp_path: Path, task: str) -> None:
    data = write_image_task_dataset(tmp_path / "images", 36, regression=task == "regression")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    dataset = store_dataset(server, rows, task=task, modality="image", images=data.parent)
    done = train(client, dataset.id, tiny_efficientnet, hp={"max_seq_length": 128, "learning_rate": 3e-3})
    params = TaskParams.load(version_dir(server, done.model_id))
    assert params.task == task
    if task == "multi_label":
        assert set(done.result.label_thresholds) == set(IMAGE_TAGS.values()) - {"blue"}


def test_a_metric_the_task_does_not_report_is_refused(server: ServerThread, client: Client, tiny_bert: Path) -> None:
    dataset = store_dataset(server, regression_rows(40), task="regression")
    with pytest.raises(InvalidArgument, match=r"metric_for_best_model must be one of rmse, mae, spearman, pearson, r2, "
                                              r"loss for a regression dataset, not 'macro_f1'"):
        client.fine_tune(dataset.id, backbone=str(tiny_bert), hyperparameters={"metric_for_best_model": "macro_f1"})
    assert client.list_jobs().jobs == []


@pytest.mark.parametrize(
    ("rows", "task"),
    [
        (multi_label_rows(60), Task.TASK_MULTI_LABEL),
        (regression_rows(48), Task.TASK_REGRESSION),
        (pair_rows(48), Task.TASK_CLASSIFICATION),
    ],
    ids=["multi_label", "regression", "pairs"],
)
def test_uploaded_datasets_of_every_task_fine_tune(
    client: Client, tiny_bert: Path, tmp_path: Path, rows: list[dict[str, Any]], task: int
) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = client.upload_dataset(path)
    assert dataset.task == task
    done = train(client, dataset.id, tiny_bert)
    assert done.task == task and done.text_pairs == ("text_pair" in rows[0])
