"""Multi-process training through the real server: with training.processes_per_job = 2 the worker runs under
`torchrun --nproc_per_node=2` and the Trainer trains with DDP (gloo on CPU).

The DDP fine-tune must end SUCCEEDED with a servable model, report each event once (only rank 0 speaks), and reach
the quality of a single-process run on the same data and seed. The comparison is at the same global batch: 2 processes
x batch_size 8 against 1 process x batch_size 16, so both take the same optimizer steps. It is still not bit-identical
(the DistributedSampler shards and orders the rows differently, and gradients are averaged in another order), so
both must learn the easily learnable synthetic topics (validation macro F1 >= 0.9, 36 validation rows) and end within
0.05 macro F1 (< 2 rows) and 0.1 validation loss of each other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import ServerThread, make_settings
from tests.fixtures import write_text_dataset
from tuneserve_client import Client, InvalidArgument, JobState

COUNTS = {"sport": 60, "politics": 60, "tech": 60}
HP = {"epochs": 5, "max_seq_length": 32, "learning_rate": 5e-3, "head_learning_rate": 2e-2, "early_stopping_patience": 0,
      "seed": 7, "refit": "false"}
TEXTS = ["the match ended with a late goal", "parliament votes on the new law", "a faster chip for phones"]


def _fine_tune(
    data_dir: Path, tiny_bert: Path, train_file: Path, processes: int, batch_size: int
) -> tuple[object, list, list]:
    """Fine-tune on a fresh server with `processes` training processes; the job, its events, and Predict labels."""
    # NOTE: one torch thread per process: on a shared 2-CPU machine more threads only contend.
    settings = make_settings(data_dir, tiny_bert.parent, processes_per_job=processes, worker_threads=processes)
    thread = ServerThread(settings).start()
    try:
        with Client(thread.target, timeout=60) as client:
            train = client.upload_dataset(train_file)
            job = client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters={**HP, "batch_size": batch_size})
            events: list = []
            done = client.wait_for_job(job.id, on_event=events.append, timeout=240)
            assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
            labels = [p.label for p in client.predict(done.model_id, TEXTS).predictions]
        assert not (data_dir / "jobs" / job.id / "trainer_checkpoints").exists()
        return done, events, labels
    finally:
        thread.close()


def test_two_process_ddp_matches_a_single_process_run(tiny_bert: Path, tmp_path: Path) -> None:
    train_file = write_text_dataset(tmp_path / "train.jsonl", COUNTS, seed=3)
    single, single_events, single_labels = _fine_tune(tmp_path / "one", tiny_bert, train_file, 1, batch_size=16)
    ddp, ddp_events, ddp_labels = _fine_tune(tmp_path / "two", tiny_bert, train_file, 2, batch_size=8)

    def total_steps(events: list) -> int:
        return next(e.progress.total_steps for e in reversed(events) if e.HasField("progress"))

    # DDP really ran on 2 processes: each step took a batch of 8 on each, as many steps as one process with 16
    # (one process with a batch of 8 would have taken twice as many).
    assert total_steps(ddp_events) == total_steps(single_events) == HP["epochs"] * 144 // 16
    # Only rank 0 reports: each step's progress, each evaluation and the export appear once.
    steps = [e.progress.step for e in ddp_events if e.HasField("progress")]
    assert steps == sorted(set(steps)) and steps[-1] == total_steps(ddp_events)
    assert len([e for e in ddp_events if e.HasField("evaluation")]) == HP["epochs"]
    assert len([e for e in ddp_events if e.HasField("export")]) == 1
    assert ddp.result.parity_max_abs_diff <= 1e-4

    one, two = single.result.validation_metrics, ddp.result.validation_metrics
    assert one["macro_f1"] >= 0.9 and two["macro_f1"] >= 0.9, (one, two)
    assert two["macro_f1"] == pytest.approx(one["macro_f1"], abs=0.05)
    assert two["loss"] == pytest.approx(one["loss"], abs=0.1)
    assert ddp_labels == single_labels == ["sport", "politics", "tech"]


def test_gradual_unfreezing_is_refused_with_several_processes(tiny_bert: Path, tmp_path: Path) -> None:
    thread = ServerThread(make_settings(tmp_path / "data", tiny_bert.parent, processes_per_job=2)).start()
    try:
        with Client(thread.target, timeout=60) as client:
            train = client.upload_dataset(write_text_dataset(tmp_path / "train.jsonl", COUNTS, seed=3))
            with pytest.raises(InvalidArgument, match="gradual_unfreezing"):
                client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters={**HP, "gradual_unfreezing": True})
    finally:
        thread.close()


# --- cancel and crash: every rank stops -------------------------------------------------------------------------


@pytest.fixture
def ddp_client(tiny_bert: Path, tmp_path: Path) -> Iterator[tuple[Client, str]]:
    """A server with processes_per_job = 2 and a dataset uploaded to it."""
    thread = ServerThread(make_settings(tmp_path / "data", tiny_bert.parent, processes_per_job=2)).start()
    try:
        with Client(thread.target, timeout=60) as client:
            yield client, client.upload_dataset(write_text_dataset(tmp_path / "train.jsonl", COUNTS, seed=3)).id
    finally:
        thread.close()


def _ranks(job_id: str) -> dict[int, psutil.Process]:
    """The job's training processes (torchrun's workers), by global rank."""
    ranks = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "tuneserve.engines.training.worker" in cmdline and any(job_id in arg for arg in cmdline):
            try:
                rank = proc.environ().get("RANK")
            except psutil.Error:
                continue
            if rank is not None:
                ranks[int(rank)] = proc
    return ranks


def _start_long_job(client: Client, dataset_id: str, tiny_bert: Path) -> str:
    """A job that would run for a long time, once both ranks are training (its first progress event)."""
    job = client.fine_tune(dataset_id, backbone=str(tiny_bert), hyperparameters={**HP, "max_steps": 100_000,
                                                                                 "batch_size": 8, "eval_steps": 0})
    deadline = time.monotonic() + 120
    while client.get_job(job.id).progress.step == 0:
        assert time.monotonic() < deadline, "the job never reported progress"
        time.sleep(0.5)
    assert sorted(_ranks(job.id)) == [0, 1]
    return job.id


def _wait_gone(processes: list[psutil.Process], timeout: float = 30) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"ranks still running: {alive}"


def test_cancel_stops_every_rank(ddp_client: tuple[Client, str], tiny_bert: Path) -> None:
    client, dataset_id = ddp_client
    job_id = _start_long_job(client, dataset_id, tiny_bert)
    ranks = list(_ranks(job_id).values())
    client.cancel_job(job_id)
    done = client.wait_for_job(job_id, timeout=60)
    assert done.state == JobState.JOB_STATE_CANCELLED, done.error
    _wait_gone(ranks)


def test_a_rank_that_dies_fails_the_job_with_its_reason(ddp_client: tuple[Client, str], tiny_bert: Path) -> None:
    client, dataset_id = ddp_client
    job_id = _start_long_job(client, dataset_id, tiny_bert)
    ranks = _ranks(job_id)
    ranks[1].kill()  # SIGKILL, as the kernel's OOM killer would
    done = client.wait_for_job(job_id, timeout=90)
    assert done.state == JobState.JOB_STATE_FAILED
    assert done.error == "training rank 1 killed by SIGKILL (out of memory?)"
    _wait_gone(list(ranks.values()))


def test_a_refit_under_ddp_trains_on_every_rank_and_serves(ddp_client: tuple[Client, str], tiny_bert: Path) -> None:
    client, dataset_id = ddp_client
    job = client.fine_tune(dataset_id, backbone=str(tiny_bert),
                           hyperparameters={**HP, "epochs": 2, "batch_size": 8, "refit": "true"})
    events: list = []
    done = client.wait_for_job(job.id, on_event=events.append, timeout=240)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
    r = done.result
    assert r.refit and r.refit_examples == sum(COUNTS.values())
    # every rank took part (a step is a batch of 8 on each of 2 processes: 9 steps an epoch on 144 training rows) and
    # only rank 0 reported: the refit's steps once each, one export
    assert next(e.progress.total_steps for e in events if e.HasField("progress")) == 2 * 144 // 16
    refit_steps = [e.progress.step for e in events if e.HasField("progress") and e.message.startswith("[refit] ")]
    assert refit_steps == sorted(set(refit_steps)) and refit_steps[-1] == r.refit_steps
    assert len([e for e in events if e.HasField("export")]) == 1
    assert all(p.label in COUNTS for p in client.predict(done.model_id, TEXTS).predictions)
