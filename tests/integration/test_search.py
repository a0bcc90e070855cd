"""FineTune(search=N) through the real client and server: typed `trial` events on WatchJob, a server restart while a
trial runs (the job resumes, the interrupted trial is run again from its checkpoint), the trials in the job result and
the best trial's model serving Predict."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerThread
from tests.fixtures import write_text_dataset
from tests.integration.conftest import QUICK
from tuneserve_client import Client, JobEvent, JobState
from tuneserve_client.proto.tuneserve.v1.training_pb2 import TrialState

COUNTS = {"sport": 16, "politics": 12, "tech": 8}
# NOTE: a few steps and two evaluations per trial (the pruner needs a second one); the learning rates stay fixed, the
# rest of the space is searched
HP = {**QUICK, "max_steps": 16, "eval_steps": 8}
ENDED = {TrialState.TRIAL_STATE_COMPLETE, TrialState.TRIAL_STATE_PRUNED}


def test_search_trials_survive_a_restart_and_the_best_trial_serves(
    server: ServerThread, client: Client, tiny_bert: Path, tmp_path: Path
) -> None:
    dataset = client.upload_dataset(write_text_dataset(tmp_path / "train.jsonl", COUNTS, seed=3))
    job = client.fine_tune(dataset.id, backbone=str(tiny_bert), model_name="searched", hyperparameters=HP, search=3)
    for event in client.watch_job(job.id):  # restart the server while the second trial trains
        if event.HasField("progress") and event.message.startswith("[trial 1] "):
            break
    server.restart()

    with Client(server.target, timeout=60) as again:
        done = again.wait_for_job(job.id, timeout=300)
        assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
        events = list(again.watch_job(job.id))
        messages = [e.message for e in events]
        trials = list(done.result.trials)
        assert len(trials) == 3 and all(t.state in ENDED for t in trials), trials
        # the interrupted trial 1 is left out; its rerun (trial 2) resumed its checkpoint
        assert [t.number for t in trials] == [0, 2, 3]
        assert any(m.startswith("[trial 2] resumed from the checkpoint") for m in messages), messages
        assert "server shutting down; the job resumes from its checkpoint after the restart" in messages
        best = [t for t in trials if t.best]
        assert len(best) == 1 and best[0].metric == done.result.best_metric and best[0].state == TrialState.TRIAL_STATE_COMPLETE

        typed = [e.trial for e in events if e.HasField("trial")]
        assert [(t.number, t.state) for t in typed if t.number == 1] == [(1, TrialState.TRIAL_STATE_RUNNING)]
        for trial in trials:
            states = [t.state for t in typed if t.number == trial.number]
            assert states == [TrialState.TRIAL_STATE_RUNNING, trial.state], (trial.number, states)
        assert _ended(events, 0) < _started(events, 1) < messages.index(
            "server shutting down; the job resumes from its checkpoint after the restart") < _started(events, 2)

        prediction = again.predict(done.model_id, ["the match ended with a late goal"])
        assert prediction.model_version == 1 and prediction.predictions[0].label in COUNTS


def _started(events: list[JobEvent], number: int) -> int:
    return next(i for i, e in enumerate(events) if e.HasField("trial") and e.trial.number == number
                and e.trial.state == TrialState.TRIAL_STATE_RUNNING)


def _ended(events: list[JobEvent], number: int) -> int:
    return next(i for i, e in enumerate(events) if e.HasField("trial") and e.trial.number == number
                and e.trial.state in ENDED)
