"""Faults injected for real into a `tuneserve serve` child process (issue 6): a SIGKILLed training worker, a
SIGKILLed server, a corrupted artifact, a full disk during export, SIGTERM with Predicts in flight and a job to
checkpoint, restarts from the checkpoint (training.max_restarts), and the concurrent-RPC cap. Each test checks the fault is reported as it should be and that serving goes on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts, write_text_dataset
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tests.integration.disk import tmpfs
from tests.integration.server_process import ServerProcess, pid_alive, wait_until
from tuneserve_client import (
    AsyncClient,
    Client,
    FailedPrecondition,
    JobEvent,
    JobState,
    ModelVersionState,
    ResourceExhausted,
    TuneServeError,
    Unavailable,
)

# NOTE: long enough to still be training when the fault is injected, whatever the machine's load
LONG = {**QUICK, "max_steps": 20000, "eval_steps": 10000}
FEW = {**QUICK, "max_steps": 8, "eval_steps": 8}
TEXTS = [text for text, _ in make_texts({"sport": 4, "politics": 4}, seed=9)]


@dataclass
class Live:
    server: ServerProcess
    model_id: str
    dataset_id: str
    backbone: str

    def client(self) -> Client:
        return Client(self.server.target, timeout=60)


@pytest.fixture(scope="module")
def live(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server process with one READY tiny model; each test leaves it running (restarting it if it stopped it)."""
    root = tmp_path_factory.mktemp("faults")
    server = ServerProcess(root / "data", tiny_bert.parent).start()
    try:
        with Client(server.target, timeout=60) as client:
            train = client.upload_dataset(write_text_dataset(root / "train.jsonl", TRAIN_COUNTS, seed=1))
            job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="faults", hyperparameters=QUICK)
            done = client.wait_for_job(job.id, timeout=300)
            assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
        yield Live(server, job.model_id, train.id, str(tiny_bert))
    finally:
        server.stop()


@pytest.fixture
def running(live: Live) -> Iterator[Live]:
    """The live server, (re)started if a previous test stopped it; long jobs a test leaves behind are cancelled."""
    if live.server.proc is None or live.server.proc.poll() is not None:
        live.server.start()
    yield live
    if live.server.proc is not None and live.server.proc.poll() is None:
        with live.client() as client:
            for job in client.list_jobs().jobs:
                if job.state in (JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RUNNING):
                    client.cancel_job(job.id)


def start_long_job(live: Live, client: Client) -> tuple[str, int]:
    """A fine-tune that trains for minutes: its id and its worker's pid, once it has made progress."""
    job = client.fine_tune(live.dataset_id, backbone=live.backbone, model_name="long", hyperparameters=LONG)
    wait_until(lambda: client.get_job(job.id).progress.step >= 1, 180, "the long job to make progress")
    worker = wait_until(live.server.workers, 30, "its training worker")
    assert len(worker) == 1
    return job.id, worker[0].pid


def predicts(client: Client, model_id: str, version: int = 0) -> None:
    response = client.predict(model_id, TEXTS, version=version)
    assert len(response.predictions) == len(TEXTS)


def test_a_sigkilled_worker_fails_its_job_with_the_reason_and_serving_goes_on(running: Live) -> None:
    with running.client() as client:
        job_id, worker_pid = start_long_job(running, client)
        os.kill(worker_pid, signal.SIGKILL)
        done = client.wait_for_job(job_id, timeout=60)
        assert done.state == JobState.JOB_STATE_FAILED
        assert "training worker killed by SIGKILL (out of memory?)" in done.error
        version = client.get_model(done.model_id).versions[-1]
        assert version.state == ModelVersionState.MODEL_VERSION_STATE_FAILED
        assert not (running.server.data_dir / "models" / done.model_id / str(done.model_version)).exists()
        predicts(client, running.model_id)


def test_a_sigkilled_server_leaves_no_running_job_nor_orphan_worker(running: Live) -> None:
    with running.client() as client:
        job_id, worker_pid = start_long_job(running, client)
    running.server.signal(signal.SIGKILL)
    assert running.server.wait(30) == -signal.SIGKILL
    # NOTE: the worker dies with the server (PR_SET_PDEATHSIG, and its watcher of the server's pid)
    wait_until(lambda: not pid_alive(worker_pid), 15, f"the orphaned worker {worker_pid} to exit")
    running.server.start()
    with running.client() as client:
        job = client.get_job(job_id)
        assert job.state == JobState.JOB_STATE_FAILED
        assert job.error == "the server stopped while the job was running"
        assert not client.list_jobs(state=JobState.JOB_STATE_RUNNING).jobs
        assert client.get_dataset(running.dataset_id).num_rows == sum(TRAIN_COUNTS.values())
        assert client.get_model(running.model_id).versions[0].state == ModelVersionState.MODEL_VERSION_STATE_READY
        predicts(client, running.model_id)


def test_sigterm_drains_inflight_predicts_checkpoints_the_job_and_exits_within_grace(running: Live) -> None:
    grace = 6.0
    running.server.stop()
    # NOTE: a 2 s batching delay keeps single-text Predicts in flight long enough to send SIGTERM among them
    running.server.start(TUNESERVE_SERVER__GRACE_SECONDS=str(grace), TUNESERVE_BATCHING__MAX_QUEUE_DELAY_MS="2000")
    with running.client() as client:
        job_id, _ = start_long_job(running, client)
        predicts(client, running.model_id)  # loaded, so the in-flight ones only wait for their batch

    async def scenario() -> tuple[list[object], BaseException | None, float, int]:
        async with AsyncClient(running.server.target, timeout=30) as client:
            inflight = [asyncio.ensure_future(client.predict(running.model_id, [text])) for text in TEXTS]
            await asyncio.sleep(0.5)
            signalled = time.monotonic()
            running.server.signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            refused: BaseException | None = None
            try:  # a new connection, as a new caller would open
                async with AsyncClient(running.server.target, timeout=5) as late:
                    await late.predict(running.model_id, TEXTS[:1])
            except Exception as exc:
                refused = exc
            results = await asyncio.gather(*inflight, return_exceptions=True)
            code = await asyncio.to_thread(running.server.wait, grace + 30)
            return results, refused, time.monotonic() - signalled, code

    results, refused, took, code = asyncio.run(scenario())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert all(len(r.predictions) == 1 for r in results)  # type: ignore[attr-defined]
    assert isinstance(refused, Unavailable), refused
    assert code == 0, running.server.log_tail()
    assert took < grace + 5, f"exit took {took:.1f}s with grace {grace}s"
    running.server.start()
    with running.client() as client:
        # NOTE: the worker saved a checkpoint of the step it reached; the job went back to the queue and resumes there
        checkpoint, resumed = first_progress_after(client, job_id, "server shutting down")
        assert resumed.progress.step == checkpoint.checkpoint.step > 0
        assert resumed.message.startswith(f"resumed from the checkpoint at step {checkpoint.checkpoint.step}/")
        assert client.get_job(job_id).restarts == 0  # a graceful shutdown is not a restart
        client.cancel_job(job_id)
        assert client.wait_for_job(job_id, timeout=60).state == JobState.JOB_STATE_CANCELLED
        events = [e.message for e in client.watch_job(job_id) if e.message.startswith("server shutting down")]
        assert events == ["server shutting down; the job resumes from its checkpoint after the restart"]
    assert not list((running.server.data_dir / "jobs" / job_id).glob("checkpoints*"))  # gone with the job


def test_a_job_stopped_during_its_baseline_keeps_its_fine_tune_and_resumes_the_baseline(running: Live) -> None:
    with running.client() as client:
        job = client.fine_tune(running.dataset_id, backbone=running.backbone, model_name="baseline-resume",
                               hyperparameters={**QUICK, "max_steps": 80, "eval_steps": 80}, baselines=["frozen"])
        seen: list[str] = []

        def follow() -> None:
            with contextlib.suppress(Unavailable):  # the server stopping ends the stream
                seen.extend(event.message for event in client.watch_job(job.id))

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        wait_until(lambda: any(m.startswith("[baseline frozen] step") for m in seen), 600,
                   "the frozen baseline to make progress")
        running.server.stop()  # SIGTERM
        follower.join(30)
    running.server.start()
    with running.client() as client:
        checkpoint, resumed = first_progress_after(client, job.id, "server shutting down")
        assert resumed.message.startswith(f"[baseline frozen] resumed from the checkpoint at step "
                                          f"{checkpoint.checkpoint.step}/"), resumed.message
        done = client.wait_for_job(job.id, timeout=600)
        assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
        assert [b.kind for b in done.result.baselines] == ["frozen"]
        after = [e.message for e in client.watch_job(job.id)]
        after = after[after.index("server shutting down; the job resumes from its checkpoint after the restart"):]
        # the fine-tune had finished: it is not trained again, only the baseline goes on
        assert not [m for m in after if m.startswith("step ")], after
        predicts(client, done.model_id)


def test_a_cancel_still_under_way_at_shutdown_ends_the_job_cancelled(running: Live) -> None:
    """A job whose cancel has not finished when the server stops ends CANCELLED: it is not re-queued to resume."""
    running.server.stop()
    running.server.start(TUNESERVE_TRAINING__CANCEL_GRACE_SECONDS="2")
    worker_pid = 0
    try:
        with running.client() as client:
            job_id, worker_pid = start_long_job(running, client)
            os.kill(worker_pid, signal.SIGSTOP)  # NOTE: a stopped worker cannot act on the cancel before the shutdown
            client.cancel_job(job_id)
        running.server.stop()
        wait_until(lambda: not pid_alive(worker_pid), 15, "the stopped worker to be killed")
        running.server.start()
        with running.client() as client:
            job = client.get_job(job_id)
            assert job.state == JobState.JOB_STATE_CANCELLED, job
            assert job.error == "cancelled by request"
    finally:
        if worker_pid:  # NOTE: never os.kill(0, ...): that is this whole process group
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker_pid, signal.SIGKILL)
        running.server.stop()


def first_progress_after(client: Client, job_id: str, message: str) -> tuple[JobEvent, JobEvent]:
    """The job's last checkpoint event before the first event whose message starts with `message`, and its first
    progress event after that one."""
    checkpoint: JobEvent | None = None
    seen = False
    for event in client.watch_job(job_id):
        kind = event.WhichOneof("kind")
        if event.message.startswith(message):
            seen = True
        elif kind == "checkpoint" and not seen:
            checkpoint = event
        elif kind == "progress" and seen:
            assert checkpoint is not None, "no checkpoint was saved before the interruption"
            return checkpoint, event
    raise AssertionError(f"the job ended without progress after {message!r}")


def assert_resumed_from_the_newest_checkpoint(checkpoint: JobEvent, resumed: JobEvent, every: int) -> None:
    """After a SIGKILL the job resumes from the newest complete checkpoint on disk. That is the last one reported, or
    the next one when the kill came after its files were complete and before its event reached the server (the
    worker reports a checkpoint after saving it; a SIGKILLed server reads no more of its worker's events)."""
    assert resumed.progress.step in (checkpoint.checkpoint.step, checkpoint.checkpoint.step + every)
    assert resumed.message.startswith(f"resumed from the checkpoint at step {resumed.progress.step}/")


def test_with_max_restarts_a_killed_worker_and_a_killed_server_resume_from_the_checkpoint(running: Live) -> None:
    running.server.stop()
    running.server.start(TUNESERVE_TRAINING__MAX_RESTARTS="2")
    job_id = None
    try:
        with running.client() as client:
            job = client.fine_tune(running.dataset_id, backbone=running.backbone, model_name="restarts",
                                   hyperparameters={**LONG, "eval_steps": 4})
            job_id = job.id
            wait_until(lambda: client.get_job(job.id).progress.step >= 6, 300, "the job to pass its first checkpoint")
            (worker,) = running.server.workers()
            worker.kill()
            checkpoint, resumed = first_progress_after(client, job.id, "training worker killed by SIGKILL")
            assert checkpoint.checkpoint.step >= 4
            assert_resumed_from_the_newest_checkpoint(checkpoint, resumed, every=4)
            assert client.get_job(job.id).restarts == 1
            wait_until(lambda: client.get_job(job.id).progress.step >= resumed.progress.step + 6, 300,
                       "the resumed job to pass another checkpoint")
        running.server.signal(signal.SIGKILL)
        running.server.wait(30)
        running.server.start(TUNESERVE_TRAINING__MAX_RESTARTS="2")
        with running.client() as client:
            checkpoint, resumed = first_progress_after(client, job.id, "the server stopped while the job was running")
            assert checkpoint.checkpoint.step > 4
            assert_resumed_from_the_newest_checkpoint(checkpoint, resumed, every=4)
            assert client.get_job(job.id).restarts == 2
            client.cancel_job(job.id)
            assert client.wait_for_job(job.id, timeout=60).state == JobState.JOB_STATE_CANCELLED
    finally:
        if job_id is not None and running.server.alive:
            # NOTE: else a failure above leaves a 20000-step job that the next test's server resumes, and it holds
            # the one training slot
            with contextlib.suppress(TuneServeError), running.client() as client:
                client.cancel_job(job_id)
        running.server.stop()  # the next test gets a server with the default settings


def test_a_corrupted_artifact_is_detected_by_checksum_reported_and_never_served(running: Live) -> None:
    with running.client() as client:
        job = client.fine_tune(
            running.dataset_id, backbone=running.backbone, model_id=running.model_id, hyperparameters=FEW
        )
        done = client.wait_for_job(job.id, timeout=300)
        assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
        version_dir = running.server.data_dir / "models" / running.model_id / str(done.model_version)
        assert (version_dir / "checksums.json").exists()
        onnx = version_dir / "model.onnx"
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)  # inside the weights: ONNX Runtime would load it
        onnx.write_bytes(bytes(data))

        with pytest.raises(FailedPrecondition) as refused:
            client.predict(running.model_id, TEXTS, version=done.model_version)
        assert f"version {done.model_version} failed its checksum check and is not served: model.onnx" in str(
            refused.value
        )
        version = client.get_model(running.model_id).versions[done.model_version - 1]
        assert version.state == ModelVersionState.MODEL_VERSION_STATE_FAILED
        assert not version.loaded
        for call in (
            lambda: client.load_model(running.model_id, version=done.model_version),
            lambda: client.evaluate(running.model_id, running.dataset_id, version=done.model_version),
        ):
            with pytest.raises(FailedPrecondition, match="FAILED, not READY"):
                call()
        # "latest" falls back to the intact version 1
        assert client.predict(running.model_id, TEXTS).model_version == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{running.server.metrics_port}/metrics", timeout=10) as r:
        assert "tuneserve_artifact_checksum_failures_total 1.0" in r.read().decode()
    assert "is corrupt and will not be served: model.onnx sha256" in running.server.log_tail(200)


@pytest.fixture
def full_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (needs root and mount), to hold the export's output directory."""
    with tmpfs(tmp_path / "full", "64k") as mount_point:
        yield mount_point


def test_a_full_disk_during_export_fails_the_job_and_registers_nothing(running: Live, full_filesystem: Path) -> None:
    with running.client() as client:
        job = client.fine_tune(running.dataset_id, backbone=running.backbone, model_name="full", hyperparameters={
            **QUICK, "max_steps": 40, "eval_steps": 40,
        })
        wait_until(lambda: client.get_job(job.id).progress.step >= 1, 180, "the job to make progress")
        # NOTE: training has started (the job's old output/ is gone): its export now writes into the full tmpfs
        job_dir = running.server.data_dir / "jobs" / job.id
        (job_dir / "output").symlink_to(full_filesystem, target_is_directory=True)
        done = client.wait_for_job(job.id, timeout=300)
        assert done.state == JobState.JOB_STATE_FAILED
        assert done.error.startswith("disk full (free space on the data volume and train again):"), done.error
        assert "No space left on device" in done.error
        assert any(full_filesystem.iterdir()), "nothing was half written: the disk never filled"
        assert not (job_dir / "output").exists()
        assert not (running.server.data_dir / "models" / done.model_id / "1").exists()
        model = client.get_model(done.model_id)
        assert [v.state for v in model.versions] == [ModelVersionState.MODEL_VERSION_STATE_FAILED]
        with pytest.raises(FailedPrecondition, match="has no READY version"):
            client.predict(done.model_id, TEXTS)
        predicts(client, running.model_id)


def test_rpcs_beyond_max_concurrent_rpcs_are_refused_with_resource_exhausted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", tmp_path)
    settings.server.max_concurrent_rpcs = 1
    server = ServerThread(settings).start()
    try:
        with Client(server.target, timeout=10) as client:
            client.list_models()  # one at a time is fine
            import grpc

            with grpc.insecure_channel(server.target) as channel:
                watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING  # holds the only slot
                with pytest.raises(ResourceExhausted, match="Concurrent RPC limit exceeded"):
                    client.list_models()
                watch.cancel()
            wait_until(lambda: _lists(client), 10, "the slot to be free again")
    finally:
        server.close()


def _lists(client: Client) -> bool:
    try:
        client.list_models()
    except ResourceExhausted:
        return False
    return True
