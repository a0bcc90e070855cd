"""FineTune on a small set with refit left to auto, through the real client and server: auto chooses a refit (fewer
than auto.REFIT_MAX_TRAIN_ROWS training rows), so the job retrains on train+validation after its first run, says so in its events and result (the validation figures staying the first run's), and the version it
publishes is the refit model, which Predict serves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tuneserve_client import Client, JobState


def test_refit_job_publishes_and_serves_the_retrained_model(
    server: ServerThread, client: Client, tiny_bert: Path, train_file: Path
) -> None:
    train = client.upload_dataset(train_file)
    hyperparameters = {name: value for name, value in QUICK.items() if name != "refit"}
    job = client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters=hyperparameters)
    events = []
    done = client.wait_for_job(job.id, on_event=events.append, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error

    r = done.result
    assert done.hyperparameters.refit == "true" and "refit" in r.auto_hyperparameters
    assert r.refit and r.refit_examples == r.train_examples + r.validation_examples == train.num_rows
    assert r.refit_steps == math.ceil(r.best_step * r.refit_examples / r.train_examples) and r.refit_seconds > 0
    messages = [e.message for e in events]
    assert any(m.startswith(f"refit: a fresh model trains on the {train.num_rows} training and validation rows")
               for m in messages), messages
    refit_progress = [e.progress for e in events if e.HasField("progress") and e.message.startswith("[refit] ")]
    assert refit_progress[-1].step == refit_progress[-1].total_steps == r.refit_steps
    # the version's figures are the first run's best checkpoint on the validation rows
    best = next(p for p in r.learning_curve if p.step == r.best_step)
    assert r.validation_metrics["macro_f1"] == pytest.approx(best.metrics["macro_f1"])
    model = client.get_model(done.model_id)
    assert dict(model.versions[0].validation_metrics) == pytest.approx(dict(r.validation_metrics))

    version_dir = server.settings.storage.data_dir / "models" / done.model_id / "1"
    metrics = json.loads((version_dir / "metrics.json").read_text())
    assert (metrics["refit"], metrics["refit_steps"]) == (True, r.refit_steps)
    assert not list((server.settings.storage.data_dir / "jobs" / job.id).glob("checkpoints*"))
    prediction = client.predict(done.model_id, ["the match ended with a late goal", "a faster chip for phones"])
    assert prediction.model_version == 1 and all(p.label in TRAIN_COUNTS for p in prediction.predictions)
