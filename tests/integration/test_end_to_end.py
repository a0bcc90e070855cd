"""Upload -> FineTune -> WatchJob -> Evaluate -> Predict through the real client and server, and a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tests.integration.conftest import QUICK, TEST_COUNTS, TRAIN_COUNTS
from tuneserve_client import Client, FailedPrecondition, JobState


def test_finetune_watch_evaluate_predict_and_restart(
    server: ServerThread, client: Client, tiny_bert: Path, train_file: Path, test_file: Path
) -> None:
    train = client.upload_dataset(train_file)
    test = client.upload_dataset(test_file)
    assert train.num_rows == sum(TRAIN_COUNTS.values())
    assert sorted(train.labels) == sorted(TRAIN_COUNTS) and dict(train.label_counts) == TRAIN_COUNTS

    job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="topics", hyperparameters=QUICK)
    assert job.state == JobState.JOB_STATE_QUEUED
    events = []
    done = client.wait_for_job(job.id, on_event=events.append, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error

    kinds = [e.WhichOneof("kind") for e in events]
    states = [JobState.Name(e.state_changed.state) for e in events if e.HasField("state_changed")]
    assert states == ["JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    for kind in ("progress", "evaluation", "checkpoint", "export"):
        assert kind in kinds, kinds
    assert kinds.index("export") > kinds.index("checkpoint") > kinds.index("progress")
    progress = [e.progress for e in events if e.HasField("progress")]
    assert progress[-1].total_steps == QUICK["max_steps"] and progress[-1].train_loss > 0
    export = next(e.export for e in events if e.HasField("export"))
    assert export.parity_max_abs_diff <= 1e-4 and export.size_bytes > 0
    assert done.result.parity_max_abs_diff <= 1e-4 and "macro_f1" in done.result.validation_metrics

    report = client.evaluate(done.model_id, test.id).report
    n = sum(TEST_COUNTS.values())
    assert report.num_examples == n and report.model_version == 1
    matrix = [list(r.counts) for r in report.confusion_matrix.rows]
    assert sum(map(sum, matrix)) == n
    assert report.accuracy == pytest.approx(sum(matrix[i][i] for i in range(len(matrix))) / n)
    assert {c.label: c.support for c in report.per_class} == TEST_COUNTS
    assert 0 <= report.macro_f1 <= 1 and report.runtime == "onnxruntime"

    texts = ["the match ended with a late goal", "parliament votes on the new bill", "a faster chip for phones"]
    first = client.predict(done.model_id, texts)
    assert len(first.predictions) == 3 and first.model_version == 1
    for p in first.predictions:
        assert p.label in TRAIN_COUNTS and p.label == p.scores[0].label
        assert sum(s.score for s in p.scores) == pytest.approx(1.0, abs=1e-5)
        assert [s.score for s in p.scores] == sorted((s.score for s in p.scores), reverse=True)
    assert len(client.predict(done.model_id, texts[:1], top_k=2).predictions[0].scores) == 2

    model = client.get_model(done.model_id)
    assert model.latest_version == 1 and model.versions[0].loaded
    assert model.versions[0].execution_provider == "CPUExecutionProvider"

    server.restart()
    with Client(server.target) as again:
        assert again.get_job(job.id).state == JobState.JOB_STATE_SUCCEEDED
        assert again.get_dataset(train.id).num_rows == train.num_rows
        after = again.predict(done.model_id, texts)
        assert [list(p.scores) for p in after.predictions] == [list(p.scores) for p in first.predictions]
        replay = list(again.watch_job(job.id))
        assert [e.sequence for e in replay] == [e.sequence for e in events]


def test_cancel_running_job_and_predict_before_ready(
    client: Client, tiny_bert: Path, train_file: Path
) -> None:
    train = client.upload_dataset(train_file)
    long_run = {**QUICK, "max_steps": 100_000, "eval_steps": 100_000}
    job = client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters=long_run)
    with pytest.raises(FailedPrecondition, match="no READY version"):
        client.predict(job.model_id, ["too early"])
    for event in client.watch_job(job.id):
        if event.HasField("progress"):
            break
    client.cancel_job(job.id)
    done = client.wait_for_job(job.id, timeout=30)
    assert done.state == JobState.JOB_STATE_CANCELLED
    assert client.get_model(job.model_id).versions[0].state == 3  # MODEL_VERSION_STATE_FAILED
    with pytest.raises(FailedPrecondition):
        client.cancel_job(job.id)


@pytest.mark.slow
def test_real_packaged_minilm_backbone(client: Client, train_file: Path) -> None:
    """The default backbone (packaged all-MiniLM-L6-v2, mean pooling) through the whole service path."""
    assert client.list_backbones().backbones[0].name == "minilm-l6"
    train = client.upload_dataset(train_file)
    hp = {"max_steps": 4, "batch_size": 8, "eval_steps": 4, "max_seq_length": 32}
    done = client.wait_for_job(client.fine_tune(train.id, hyperparameters=hp).id, timeout=600)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
    assert done.backbone == "minilm-l6" and done.result.parity_max_abs_diff <= 1e-4
    prediction = client.predict(done.model_id, ["the striker scored twice"]).predictions[0]
    assert prediction.label in TRAIN_COUNTS
