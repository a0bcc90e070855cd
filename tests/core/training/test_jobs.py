"""JobManager's own rules, with a scripted runner in place of the worker process and the real SQLite store: the
lifecycle QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED, the queue bound, cancel, restarts, recovery after a
server restart, and baselines run after the fine-tune. (tests/integration runs real workers.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tuneserve.core.data.datasets import DatasetManager, UploadMetadata
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.training.admission import FineTuneParams
from tuneserve.core.training.jobs import JobManager
from tuneserve.core.training.runners.base import EventHandler, WorkerOutcome
from tuneserve.engines.training.spec import ARTIFACTS, TrainingSpec
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from tuneserve.metrics import Metrics
from tuneserve.settings import Settings
from tuneserve.store import ArtifactStore
from tuneserve.store.sqlite import SQLiteMetadataStore
from tuneserve.types import JobRecord, JobState, Page, VersionState

WAIT = 10.0
ROWS = 20  # 10 per label; the default validation fraction leaves 4 validation rows


def result(macro_f1: float, accuracy: float, rows: int = 4) -> dict[str, Any]:
    return {"validation_metrics": {"macro_f1": macro_f1, "accuracy": accuracy}, "validation_examples": rows}


class ScriptedRunner:
    """A Runner playing one scripted step per run, in order: "succeed" (write the output directory a worker would and
    report `results[spec file name]`), "block" (run until cancelled) or a WorkerOutcome to return as is."""

    def __init__(self) -> None:
        self.script: list[str | WorkerOutcome] = []
        self.results: dict[str, dict[str, Any]] = {"spec.json": result(0.9, 0.9)}
        self.specs: list[str] = []
        self.blocked = asyncio.Event()

    async def run(self, spec_path: Path, log_path: Path, on_event: EventHandler, cancel: asyncio.Event) -> WorkerOutcome:
        self.specs.append(spec_path.name)
        await on_event({"kind": "progress", "step": 1, "total_steps": 2, "message": "step 1/2"})
        step = self.script.pop(0) if self.script else "succeed"
        if isinstance(step, WorkerOutcome):
            return step
        if step == "block":
            self.blocked.set()
            await cancel.wait()  # NOTE: a server shutdown cancels this await instead
            return WorkerOutcome("cancelled", reason="cancelled by request")
        fields = self.results[spec_path.name]
        output = Path(TrainingSpec.load(spec_path).output_dir)
        output.mkdir(parents=True)
        (output / ARTIFACTS["onnx"]).write_bytes(b"onnx")
        (output / ARTIFACTS["metrics"]).write_text(json.dumps(fields))
        return WorkerOutcome("succeeded", result=fields)


@dataclass
class Env:
    settings: Settings
    store: SQLiteMetadataStore
    artifacts: ArtifactStore
    datasets: DatasetManager
    registry: ModelRegistry
    runner: ScriptedRunner
    dataset_id: str
    backbone: str
    managers: list[JobManager]

    def manager(self) -> JobManager:
        """A JobManager on this store, as a (re)started server builds it; stopped at the end of the test."""
        jobs = JobManager(self.settings, self.store, self.artifacts, self.datasets, self.registry, self.runner,
                          Metrics(gpu=False))
        self.managers.append(jobs)
        return jobs

    def params(self, **fields: Any) -> FineTuneParams:
        return FineTuneParams(dataset_id=self.dataset_id, backbone=self.backbone, **fields)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    settings.training.backbone_dirs = [tmp_path / "backbones"]
    settings.training.device = "cpu"
    settings.training.worker_threads = 1
    backbone = tmp_path / "backbones" / "tiny"
    backbone.mkdir(parents=True)
    # NOTE: the manager reads only the config (modality, layer count); the scripted runner never loads weights.
    (backbone / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 30, "num_hidden_layers": 2}))
    store = SQLiteMetadataStore(tmp_path / "tuneserve.db")
    await store.open()
    artifacts = ArtifactStore(settings.storage.data_dir)
    datasets = DatasetManager(store, artifacts, settings.limits)
    dataset = await datasets.upload(UploadMetadata("topics.csv"), _chunks(_csv(ROWS)))
    e = Env(settings, store, artifacts, datasets, ModelRegistry(store, artifacts), ScriptedRunner(), dataset.id,
            str(backbone), [])
    try:
        yield e
    finally:
        for jobs in e.managers:
            await jobs.stop()
        await store.close()


def _csv(rows: int) -> bytes:
    lines = ["text,label"] + [f"{'goal match' if i % 2 else 'shares market'} number {i},{'sport' if i % 2 else 'biz'}"
                              for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def finished(jobs: JobManager, job_id: str) -> tuple[JobRecord, list[str]]:
    """Follow the job's events to its terminal state: the job then, and the states it went through."""
    states = []

    async def follow() -> None:
        async for event in jobs.watch(job_id):
            if event.kind == "state_changed":
                states.append(event.data["state"])

    await asyncio.wait_for(follow(), WAIT)
    return await jobs.get(job_id), states


async def version_state(e: Env, model_id: str, number: int = 1) -> VersionState:
    model = await e.registry.get(model_id)
    return next(v.state for v in model.versions if v.version == number)


async def test_a_job_runs_queued_running_succeeded_and_its_model_version_becomes_ready(env: Env) -> None:
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params(model_name="topics"))
    assert job.state is JobState.QUEUED and job.model_version == 1
    assert await version_state(env, job.model_id) is VersionState.TRAINING

    done, states = await finished(jobs, job.id)
    assert states == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert done.state is JobState.SUCCEEDED and done.error == "" and done.end_time >= done.start_time > 0
    assert done.result == result(0.9, 0.9) and done.progress["step"] == 1
    model = await env.registry.get(job.model_id)
    assert model.name == "topics" and model.versions[0].state is VersionState.READY
    assert model.versions[0].validation_metrics == {"macro_f1": 0.9, "accuracy": 0.9}
    assert (env.artifacts.version_dir(model.id, 1) / ARTIFACTS["onnx"]).read_bytes() == b"onnx"
    assert not (env.artifacts.job_dir(job.id) / "output").exists()  # moved into the registry

    # a second job on the same model is its version 2
    again = await jobs.submit(env.params(model_id=job.model_id))
    assert again.model_id == job.model_id and again.model_version == 2
    assert (await finished(jobs, again.id))[0].state is JobState.SUCCEEDED


async def test_a_failed_worker_fails_the_job_and_its_version(env: Env) -> None:
    env.runner.script = [WorkerOutcome("failed", reason="CUDA out of memory")]
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params())
    done, states = await finished(jobs, job.id)
    assert states == ["QUEUED", "RUNNING", "FAILED"]
    assert done.state is JobState.FAILED and done.error == "CUDA out of memory" and done.result == {}
    assert await version_state(env, job.model_id) is VersionState.FAILED
    with pytest.raises(FailedPrecondition, match="already ended FAILED"):
        await jobs.cancel(job.id)


async def test_a_retryable_failure_restarts_the_worker_while_restarts_are_left(env: Env) -> None:
    env.settings.training.max_restarts = 2
    killed = WorkerOutcome("failed", reason="training worker killed by SIGKILL (out of memory?)", retryable=True)
    env.runner.script = [killed, killed]
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params())
    done, states = await finished(jobs, job.id)
    assert done.state is JobState.SUCCEEDED and done.restarts == 2 and env.runner.specs == ["spec.json"] * 3
    assert states == ["QUEUED", "RUNNING", "RUNNING", "RUNNING", "SUCCEEDED"]  # each restart is announced

    env.runner.script = [killed, killed, killed]
    job = await jobs.submit(env.params())
    done, _ = await finished(jobs, job.id)
    assert done.state is JobState.FAILED and done.restarts == 2 and done.error == killed.reason
    # a reported failure would only fail again: no restart
    env.runner.script = [WorkerOutcome("failed", reason="export parity failed")]
    job = await jobs.submit(env.params())
    assert (await finished(jobs, job.id))[0].restarts == 0


async def test_submit_checks_its_request_and_bounds_the_queue(env: Env) -> None:
    env.settings.training.max_queued_jobs = 2
    jobs = env.manager()  # NOTE: not started: nothing takes jobs off the queue
    with pytest.raises(InvalidArgument, match="dataset_id is required"):
        await jobs.submit(FineTuneParams(dataset_id=""))
    with pytest.raises(NotFound):
        await jobs.submit(FineTuneParams(dataset_id="ds-missing", backbone=env.backbone))
    with pytest.raises(InvalidArgument, match="unknown baselines"):
        await jobs.submit(env.params(baselines=("imagenet",)))
    first, second = await jobs.submit(env.params()), await jobs.submit(env.params())
    with pytest.raises(ResourceExhausted, match="2 jobs are already queued"):
        await jobs.submit(env.params())
    queued = await jobs.list(Page(10, 0), JobState.QUEUED)
    assert {j.id for j in queued} == {first.id, second.id}
    with pytest.raises(NotFound):
        await jobs.get("job-missing")


async def test_cancelling_a_queued_job_ends_it_at_once(env: Env) -> None:
    jobs = env.manager()
    job = await jobs.submit(env.params())
    cancelled = await jobs.cancel(job.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.error == "cancelled by request"
    assert await version_state(env, job.model_id) is VersionState.FAILED
    await jobs.start()  # the queue still holds its id: the dispatcher must skip it
    assert (await finished(jobs, job.id))[1] == ["QUEUED", "CANCELLED"]
    assert env.runner.specs == []


async def test_cancelling_a_running_job_stops_its_worker(env: Env) -> None:
    env.runner.script = ["block"]
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params())
    await asyncio.wait_for(env.runner.blocked.wait(), WAIT)
    assert (await jobs.cancel(job.id)).state is JobState.RUNNING  # the dispatch loop records the end
    done, states = await finished(jobs, job.id)
    assert states == ["QUEUED", "RUNNING", "CANCELLED"] and done.error == "cancelled by request"
    assert await version_state(env, job.model_id) is VersionState.FAILED
    assert not list(env.artifacts.job_dir(job.id).glob("output*"))


async def test_a_job_running_at_shutdown_is_queued_again_and_resumes_after_the_restart(env: Env) -> None:
    env.runner.script = ["block"]
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params())
    await asyncio.wait_for(env.runner.blocked.wait(), WAIT)
    await jobs.stop()
    stopped = await jobs.get(job.id)
    assert stopped.state is JobState.QUEUED and stopped.restarts == 0

    restarted = env.manager()
    await restarted.start()
    done, states = await finished(restarted, job.id)
    assert done.state is JobState.SUCCEEDED and env.runner.specs == ["spec.json", "spec.json"]
    assert states == ["QUEUED", "RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"]


async def test_a_job_left_running_by_a_dead_server_resumes_while_restarts_are_left(env: Env) -> None:
    env.settings.training.max_restarts = 1
    jobs = env.manager()
    orphan, spent = await jobs.submit(env.params()), await jobs.submit(env.params())
    for job in (orphan, spent):  # NOTE: as a server that died mid-job leaves them: RUNNING, nobody running them
        assert await env.store.claim_job(job.id, 1.0) is not None
    spent_record = await jobs.get(spent.id)
    spent_record.restarts = 1
    await env.store.update_job(spent_record)

    restarted = env.manager()
    await restarted.start()
    done, _ = await finished(restarted, orphan.id)
    assert done.state is JobState.SUCCEEDED and done.restarts == 1
    failed, _ = await finished(restarted, spent.id)
    assert failed.state is JobState.FAILED and failed.error == "the server stopped while the job was running"
    assert await version_state(env, spent.model_id) is VersionState.FAILED


async def test_a_finished_run_is_not_run_again(env: Env) -> None:
    jobs = env.manager()
    job = await jobs.submit(env.params())
    # NOTE: the worker wrote its metrics.json (its last write) before the server went away
    output = env.artifacts.job_dir(job.id) / "output"
    output.mkdir()
    (output / ARTIFACTS["metrics"]).write_text(json.dumps(result(0.8, 0.75)))
    await jobs.start()
    done, _ = await finished(jobs, job.id)
    assert done.state is JobState.SUCCEEDED and done.result == result(0.8, 0.75) and env.runner.specs == []


async def test_baselines_run_after_the_fine_tune_and_the_result_carries_the_verdict(env: Env) -> None:
    env.runner.results = {"spec.json": result(0.95, 0.95, 40), "spec.frozen.json": result(0.9, 0.9, 40),
                          "spec.scratch.json": result(0.3, 0.3, 40)}
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params(baselines=("scratch", "frozen")))
    done, _ = await finished(jobs, job.id)
    assert done.state is JobState.SUCCEEDED
    assert env.runner.specs == ["spec.json", "spec.frozen.json", "spec.scratch.json"]  # the cheap probe first
    models = {m.kind: m for m in await env.registry.from_job(job.id)}
    assert [b["kind"] for b in done.result["baselines"]] == ["frozen", "scratch"]
    assert [b["model_id"] for b in done.result["baselines"]] == [models["frozen"].id, models["scratch"].id]
    assert done.result["transfer_verdict"].startswith(
        f"transfer helped: the fine-tuned model beats the scratch baseline {models['scratch'].id} (validation macro "
        "F1 0.9500 vs 0.3000, +65.0 points; right on 38 vs 12 of the same 40 rows; McNemar p <= "
    )
    assert f"; fine-tuning the backbone made no significant difference: the fine-tuned model vs the frozen baseline " \
           f"{models['frozen'].id}" in done.result["transfer_verdict"]
    for kind in ("frozen", "scratch"):
        assert models[kind].versions[0].state is VersionState.READY


async def test_a_failed_baseline_fails_the_whole_job(env: Env) -> None:
    env.runner.script = ["succeed", WorkerOutcome("failed", reason="diverged")]
    jobs = env.manager()
    await jobs.start()
    job = await jobs.submit(env.params(baselines=("scratch",)))
    done, _ = await finished(jobs, job.id)
    assert done.state is JobState.FAILED and done.error == "[baseline scratch] diverged"
    # NOTE: one unit: the fine-tune succeeded, but none of the job's models becomes servable
    for model in await env.registry.from_job(job.id):
        assert model.versions[0].state is VersionState.FAILED, model.kind


async def test_refit_true_is_accepted_and_never_reaches_the_baselines(env: Env) -> None:
    from tuneserve.core.training import baselines

    job = await env.manager().submit(env.params(hyperparameters={"refit": "true"}, baselines=("scratch",)))
    assert job.hyperparameters["refit"] == "true" and "refit" not in job.hyperparameters["auto_hyperparameters"]
    job_dir = env.artifacts.job_dir(job.id)
    assert TrainingSpec.load(job_dir / "spec.json").hyperparameters.refit == "true"
    # NOTE: a baseline's verdict reads validation figures only, which a refit leaves as they were
    assert TrainingSpec.load(baselines.write_spec(job_dir, "scratch")).hyperparameters.refit == "false"


async def test_unset_hyperparameters_are_chosen_from_the_data_and_a_user_value_wins(env: Env) -> None:
    """20 balanced rows: the auto rules give 10 epochs (1 step each, toward 300 steps), batches of 16, no class
    weighting, max_seq_length from the data (0, resolved by the worker); the job, its spec and its proto say so."""
    from tuneserve.grpc.v1.converters import job_to_pb

    jobs = env.manager()
    job = await jobs.submit(env.params())
    hp = job.hyperparameters
    assert (hp["epochs"], hp["batch_size"], hp["class_weighting"], hp["max_seq_length"]) == (10, 16, False, 0)
    assert hp["auto_hyperparameters"] == ["epochs", "batch_size", "validation_fraction", "eval_steps",
                                          "early_stopping_patience", "class_weighting", "max_seq_length", "refit"]
    assert hp["refit"] == "true"  # 16 training rows: below auto.REFIT_MAX_TRAIN_ROWS
    spec = TrainingSpec.load(env.artifacts.job_dir(job.id) / "spec.json")
    assert spec.hyperparameters.epochs == 10 and spec.hyperparameters.max_seq_length == 0
    assert list(job_to_pb(job).result.auto_hyperparameters) == hp["auto_hyperparameters"]

    mine = await jobs.submit(env.params(hyperparameters={"epochs": 2, "max_seq_length": 64, "class_weighting": True}))
    assert (mine.hyperparameters["epochs"], mine.hyperparameters["max_seq_length"]) == (2, 64)
    assert mine.hyperparameters["class_weighting"] is True
    assert not {"epochs", "max_seq_length", "class_weighting"} & set(mine.hyperparameters["auto_hyperparameters"])
    shown = job_to_pb(mine)
    assert shown.hyperparameters.epochs == 2 and "batch_size" in shown.result.auto_hyperparameters


async def test_automatic_early_stopping_also_stops_on_overfitting_and_a_caller_s_patience_wins(env: Env) -> None:
    jobs = env.manager()
    chosen = await jobs.submit(env.params())
    assert TrainingSpec.load(env.artifacts.job_dir(chosen.id) / "spec.json").stop_on_overfit is True
    mine = await jobs.submit(env.params(hyperparameters={"early_stopping_patience": 2}))
    assert TrainingSpec.load(env.artifacts.job_dir(mine.id) / "spec.json").stop_on_overfit is False
