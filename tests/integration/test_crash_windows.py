"""A `tuneserve serve` process SIGKILLed inside the windows where files are already in place but their record is not
written yet (issue 16, items 3 and 7): a model version published but not marked READY, a dataset published but not
recorded.

The kill is real. To land it inside a window of a few milliseconds, the test holds the SQLite write lock (a second
connection's `BEGIN IMMEDIATE`): the server renames the directory into place, then waits on the lock to write its
record, and the test kills it as soon as the directory appears."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import pytest

from tests.fixtures import write_text_dataset
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tests.integration.disk import holding_writes
from tests.integration.server_process import ServerProcess, wait_until
from tuneserve_client import Client, JobState, ModelVersionState, TuneServeError

FEW = {**QUICK, "max_steps": 8, "eval_steps": 8}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def kill_inside(server: ServerProcess, published: Path) -> None:
    """With the database's writes held, wait for `published` to appear, then SIGKILL the server."""
    with holding_writes(server.data_dir / "tuneserve.db"):
        wait_until(published.exists, 60, f"{published} to be published")
        server.signal(signal.SIGKILL)
        assert server.wait(30) == -signal.SIGKILL


def test_a_server_killed_between_a_models_publish_and_its_ready_mark_completes_the_job_after_the_restart(
    tiny_bert: Path, data_dir: Path
) -> None:
    """With restarts allowed, the job used to be trained again, then failed on "Directory not empty"; without, it
    failed. It completes either way now (the same path: a job whose training finished is never trained again)."""
    server = ServerProcess(data_dir, tiny_bert.parent, TUNESERVE_TRAINING__MAX_RESTARTS="2")
    server.start()
    try:
        with Client(server.target, timeout=60) as client:
            train = client.upload_dataset(write_text_dataset(data_dir.parent / "train.jsonl", TRAIN_COUNTS, seed=1))
            job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="publish", hyperparameters=FEW)
            output = data_dir / "jobs" / job.id / "output"
            # NOTE: metrics.json is the worker's last write: from here on the server writes nothing until the publish
            wait_until((output / "metrics.json").exists, 300, "the worker's last write")
            version_dir = data_dir / "models" / job.model_id / str(job.model_version)
            kill_inside(server, version_dir)
        assert (version_dir / "model.onnx").exists() and not output.exists()  # published, not marked READY
        server.start()
        with Client(server.target, timeout=60) as client:
            done = client.wait_for_job(job.id, timeout=120)
            assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
            assert done.restarts == 0
            assert done.result.validation_metrics["macro_f1"] >= 0
            (version,) = client.get_model(job.model_id).versions
            assert version.state == ModelVersionState.MODEL_VERSION_STATE_READY
            assert version.validation_metrics == done.result.validation_metrics
            assert len(client.predict(job.model_id, ["a text"]).predictions) == 1
            messages = [e.message for e in client.watch_job(job.id)]
            after = messages[messages.index("the server stopped while the job was running; its training had "
                                            "finished: the job completes without training again"):]
            assert not [m for m in after if m.startswith("step ")], after  # nothing trained again
        assert sorted(p.name for p in version_dir.parent.iterdir()) == [str(job.model_version)]
        assert "Directory not empty" not in server.log_tail(200)
    finally:
        server.stop()


def test_a_server_killed_right_after_a_datasets_publish_removes_the_orphan_at_the_next_start(
    tiny_bert: Path, data_dir: Path
) -> None:
    server = ServerProcess(data_dir, tiny_bert.parent)
    server.start()
    train_file = write_text_dataset(data_dir.parent / "train.jsonl", TRAIN_COUNTS, seed=1)
    try:
        with Client(server.target, timeout=60) as client:
            kept = client.upload_dataset(train_file)

            def upload() -> None:
                with contextlib.suppress(TuneServeError):  # the server dies under it
                    client.upload_dataset(train_file)

            uploading = threading.Thread(target=upload, daemon=True)
            with holding_writes(data_dir / "tuneserve.db"):
                uploading.start()
                orphans = wait_until(lambda: sorted(set((data_dir / "datasets").iterdir()) - {
                    data_dir / "datasets" / kept.id}), 60, "the second dataset to be published")
                server.signal(signal.SIGKILL)
                assert server.wait(30) == -signal.SIGKILL
            uploading.join(30)
        # also what a crash between DeleteModel's record and its files leaves: a model directory nothing lists
        gone_model = data_dir / "models" / "model-0123456789abcdef" / "1"
        gone_model.mkdir(parents=True)
        (gone_model / "model.onnx").write_bytes(b"\0" * 1024)
        server.start()
        assert not any(orphan.exists() for orphan in orphans)
        assert not gone_model.parent.exists()
        log = server.log_tail(200)
        for orphan in [*orphans, gone_model.parent]:
            assert f"removed {orphan}" in log, log
        with Client(server.target, timeout=60) as client:
            assert [d.id for d in client.list_datasets().datasets] == [kept.id]
            assert client.upload_dataset(train_file).num_rows == kept.num_rows
        assert (data_dir / "datasets" / kept.id / "data.jsonl").exists()
    finally:
        server.stop()
