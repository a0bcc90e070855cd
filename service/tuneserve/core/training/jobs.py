"""Fine-tuning jobs: validate and queue FineTune requests, run them one worker process each, track their lifecycle
(QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED) and publish their events."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneserve.core.data.datasets import DatasetManager
from tuneserve.core.ids import new_id
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.training import baselines, hyperparameters
from tuneserve.core.training.events import EventBus
from tuneserve.core.training.runners.base import Runner, WorkerOutcome
from tuneserve.cpus import available_cpus
from tuneserve.engines.backbones import num_layers, resolve_backbone
from tuneserve.engines.training.spec import ARTIFACTS, BackboneRef, ExportSpec, TrainingSpec
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from tuneserve.metrics import Metrics
from tuneserve.settings import Settings
from tuneserve.store import ArtifactStore, MetadataStore
from tuneserve.types import DatasetRecord, JobEventRecord, JobRecord, JobState, Page

log = logging.getLogger(__name__)

# The server running a job marks it alive this often; a RUNNING job not marked for ORPHAN_AFTER_SECONDS lost its server.
HEARTBEAT_SECONDS = 2.0
ORPHAN_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class FineTuneParams:
    dataset_id: str
    validation_dataset_id: str = ""
    backbone: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # only the fields the caller set
    model_name: str = ""
    model_id: str = ""
    export: ExportSpec = field(default_factory=ExportSpec)
    baselines: tuple[str, ...] = ()  # also train: "frozen" (head only), "scratch" (random init)


class JobManager:
    def __init__(
        self, settings: Settings, store: MetadataStore, artifacts: ArtifactStore, datasets: DatasetManager,
        registry: ModelRegistry, runner: Runner, metrics: Metrics,
    ) -> None:
        self._settings = settings.training
        self._storage_root = settings.storage.data_dir
        self._store = store
        self._artifacts = artifacts
        self._datasets = datasets
        self._registry = registry
        self._runner = runner
        self._metrics = metrics
        self.events = EventBus(store)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._cancels: dict[str, asyncio.Event] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._running: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover after a restart, then start the dispatch loops."""
        # NOTE: on a database shared by several servers, a RUNNING job whose server still beats is not an orphan
        for job in await self._store.orphaned_jobs(time.time() - ORPHAN_AFTER_SECONDS):
            reason = "the server stopped while the job was running"
            if job.restarts < self._settings.max_restarts:
                await self._requeue(job, f"{reason}; it resumes from its last checkpoint", restart=True)
            else:
                await self._finish(job, WorkerOutcome("failed", reason=reason))
        for job in reversed(await self._store.list_jobs(Page(10**9, 0), [JobState.QUEUED])):
            self._queue.put_nowait(job.id)
        self._metrics.job_counts = await self._store.count_jobs_by_state()
        self._workers = [asyncio.create_task(self._dispatch()) for _ in range(self._settings.max_concurrent_jobs)]
        self._workers.append(asyncio.create_task(self._heartbeat()))

    async def stop(self) -> None:
        """Preempt running workers (each saves a checkpoint); their jobs go back to QUEUED and resume after the
        restart."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- requests -------------------------------------------------------------------------------------------------

    async def submit(self, params: FineTuneParams) -> JobRecord:
        if not params.dataset_id:
            raise InvalidArgument("dataset_id is required")
        if self._queue.qsize() >= self._settings.max_queued_jobs:
            raise ResourceExhausted(f"{self._queue.qsize()} jobs are already queued (limit max_queued_jobs)")
        hp = hyperparameters.resolve(params.hyperparameters)
        if hp.gradual_unfreezing and self._settings.processes_per_job * self._settings.nodes_per_job > 1:
            # NOTE: DDP fixes the parameters it synchronises when it wraps the model; ones unfrozen later would
            # train apart on each process.
            raise InvalidArgument(
                "gradual_unfreezing cannot run with several training processes (training.processes_per_job or "
                "nodes_per_job > 1): DDP would not synchronise the layers it unfreezes; use freeze=top_k instead"
            )
        baseline_kinds = baselines.validate(params.baselines, hp)
        train = await self._datasets.get(params.dataset_id)
        if params.validation_dataset_id:
            validation = await self._datasets.get(params.validation_dataset_id)
            _check_validation_labels(train, validation)
        else:
            _check_split(train, hp.validation_fraction)
        backbone = resolve_backbone(
            params.backbone, allowed_dirs=self._backbone_dirs(), allow_hub=self._settings.allow_hub
        )
        _check_modality(train, backbone)
        if params.validation_dataset_id:
            _check_modality(validation, backbone)
        _check_export(params.export, backbone)
        hyperparameters.check_layers(hp, num_layers(backbone))
        job_id = new_id("job")
        if params.model_id:
            model = await self._registry.get(params.model_id)
            if model.labels != train.labels:
                raise InvalidArgument(
                    f"dataset labels {train.labels} differ from model {model.id!r} labels {model.labels}; "
                    "leave model_id empty to create a new model"
                )
        else:
            model = await self._registry.create(
                params.model_name or train.name, backbone.name, train.labels, backbone.modality, source_job_id=job_id
            )
        version = await self._registry.add_version(model, job_id)
        await baselines.register(
            self._registry,
            baseline_kinds,
            name=model.name,
            backbone=backbone.name,
            labels=train.labels,
            job_id=job_id,
            modality=backbone.modality,
        )
        job = JobRecord(
            id=job_id, state=JobState.QUEUED, dataset_id=train.id, validation_dataset_id=params.validation_dataset_id,
            backbone=backbone.name, hyperparameters=dataclasses.asdict(hp), model_id=model.id,
            model_version=version.version, create_time=time.time(),
        )
        await self._store.add_job(job)
        self._artifacts.job_dir(job_id).mkdir(parents=True)
        self._write_spec(job, train, backbone, params.export)
        await self._publish_state(job, "job queued")
        self._queue.put_nowait(job_id)
        return job

    async def get(self, job_id: str) -> JobRecord:
        job = await self._store.get_job(job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    async def list(self, page: Page, state: JobState | None = None) -> list[JobRecord]:
        return await self._store.list_jobs(page, [state] if state else None)

    async def cancel(self, job_id: str) -> JobRecord:
        job = await self.get(job_id)
        if job.state.terminal:
            raise FailedPrecondition(f"job {job_id!r} already ended {job.state.value}")
        if job.id in self._running:
            self._cancels[job.id].set()
            return job  # the dispatch loop records CANCELLED once the worker has stopped
        if job.state is JobState.RUNNING and self._store.shared:
            await self._store.request_cancel(job.id)  # NOTE: another server runs it: its heartbeat picks this up
            return job
        await self._finish(job, WorkerOutcome("cancelled", reason="cancelled by request"))
        return await self.get(job_id)

    async def watch(self, job_id: str, after_sequence: int = 0) -> AsyncIterator[JobEventRecord]:
        job = await self.get(job_id)
        async for event in self.events.watch(job_id, after_sequence, job.state.terminal):
            yield event

    # -- running --------------------------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            job_id = await self._queue.get()
            try:
                # NOTE: an atomic QUEUED -> RUNNING: servers sharing one database never both run a job
                job = await self._store.claim_job(job_id, time.time())
            except Unavailable as exc:
                log.warning("cannot start job %s yet: %s", job_id, exc.message)
                await asyncio.sleep(1.0)
                self._queue.put_nowait(job_id)
                continue
            if job is None:
                continue  # cancelled while it waited, or another server runs it
            try:
                await self._run(job)
            except Unavailable as exc:  # the database went away mid-job: this loop must live on for the next ones
                log.error("job %s: %s", job_id, exc.message)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                for job_id in await self._store.beat_jobs(sorted(self._running), time.time()):
                    if job_id in self._cancels:  # cancelled through another server sharing the database
                        self._cancels[job_id].set()
            except Unavailable as exc:
                log.warning("job heartbeat not stored: %s", exc.message)

    async def _run(self, job: JobRecord) -> None:
        cancel = self._cancels[job.id] = asyncio.Event()
        self._running.add(job.id)
        await self._publish_state(job, "job started")
        job_dir = self._artifacts.job_dir(job.id)
        try:
            outcome = self._finished_run(job_dir / "output") or await self._run_worker(
                job, job_dir / "spec.json", cancel
            )
            outcome = await self._run_baselines(job, outcome, cancel)
        except asyncio.CancelledError:  # the server is shutting down; the runner has preempted the worker
            if cancel.is_set():  # NOTE: a cancel that had not finished yet still ends the job, not the shutdown
                await self._finish(job, WorkerOutcome("cancelled", reason="cancelled by request"))
            else:
                await self._requeue(job, "server shutting down; the job resumes from its checkpoint after the restart")
            raise
        finally:
            self._running.discard(job.id)
            self._cancels.pop(job.id, None)
            self._metrics.job_ended(job.id)  # its tuneserve_training_* series go with it
        await self._finish(job, outcome)

    async def _run_worker(self, job: JobRecord, spec: Path, cancel: asyncio.Event, prefix: str = "") -> WorkerOutcome:
        """Run the spec's worker; one that died without reporting an error starts again, resuming from its last
        checkpoint, while the job has restarts left (training.max_restarts)."""
        log_path = self._artifacts.job_dir(job.id) / "worker.log"
        while True:
            outcome = await self._runner.run(spec, log_path, lambda e: self._on_worker_event(job, e, prefix), cancel)
            if not outcome.retryable or cancel.is_set() or job.restarts >= self._settings.max_restarts:
                return outcome
            job.restarts += 1
            await self._store.update_job(job)
            await self._publish_state(
                job, f"{prefix}{outcome.reason}; restarting it from its last checkpoint "
                f"(restart {job.restarts} of {self._settings.max_restarts})"
            )

    def _finished_run(self, output: Path) -> WorkerOutcome | None:
        """The outcome of a run of this job that finished before the job was interrupted (a job with baselines is
        several runs): its output directory is complete once it holds metrics.json, the worker's last write. Any other
        output directory is the remains of an unfinished run and is removed."""
        try:
            result = json.loads((output / ARTIFACTS["metrics"]).read_text())
        except (OSError, ValueError):
            self._artifacts.remove(output)
            return None
        return WorkerOutcome("succeeded", result=result)

    async def _requeue(self, job: JobRecord, message: str, *, restart: bool = False) -> None:
        job.state = JobState.QUEUED
        job.restarts += int(restart)
        await self._store.update_job(job)
        await self._publish_state(job, message)

    async def _run_baselines(self, job: JobRecord, outcome: WorkerOutcome, cancel: asyncio.Event) -> WorkerOutcome:
        """After a successful fine-tune, train the job's baselines one after the other; the first that does not
        succeed ends the job with its outcome."""
        models = await baselines.of_job(self._registry, job.id)
        if outcome.status != "succeeded" or not models:
            return outcome
        job_dir, entries = self._artifacts.job_dir(job.id), []
        for model in models:
            if cancel.is_set():
                return WorkerOutcome("cancelled", reason="cancelled by request")
            prefix = f"[baseline {model.kind}] "
            run = self._finished_run(baselines.output_dir(job_dir, model.kind))
            if run is None:
                spec = baselines.write_spec(job_dir, model.kind)
                await self.events.publish(
                    job.id, "baseline", {"kind": model.kind}, prefix + baselines.DESCRIPTIONS[model.kind]
                )
                run = await self._run_worker(job, spec, cancel, prefix)
            if run.status != "succeeded":
                return WorkerOutcome(run.status, reason=prefix + run.reason if run.status == "failed" else run.reason)
            entries.append(baselines.entry(model.kind, model.id, run.result))
        verdict = baselines.verdict(outcome.result, entries)
        return dataclasses.replace(outcome, result={**outcome.result, "baselines": entries, "transfer_verdict": verdict})

    async def _on_worker_event(self, job: JobRecord, event: dict[str, Any], prefix: str = "") -> None:
        kind = event.pop("kind")
        message = prefix + str(event.pop("message", ""))
        self._metrics.job_event(job.id, kind, event)
        try:
            if kind == "progress":
                job.progress = {k: event.get(k, 0) for k in ("step", "total_steps", "epoch", "eta_seconds", "train_loss")}
                await self._store.update_job(job)
            await self.events.publish(job.id, kind, event, message)
        except Unavailable as exc:  # NOTE: training goes on through a database outage; only this event is lost
            log.warning("job %s: %s event not stored: %s", job.id, kind, exc.message)

    async def _finish(self, job: JobRecord, outcome: WorkerOutcome) -> None:
        job_dir = self._artifacts.job_dir(job.id)
        output = job_dir / "output"
        for checkpoints in job_dir.glob("checkpoints*"):  # left by a failed, cancelled or preempted run
            self._artifacts.remove(checkpoints)
        # NOTE: a job with baselines is one unit: its models become READY together, or none does.
        baseline_models = await baselines.of_job(self._registry, job.id)
        if outcome.status == "succeeded":
            try:
                await asyncio.to_thread(
                    self._artifacts.publish_dir, output, self._artifacts.version_dir(job.model_id, job.model_version)
                )
                metrics = {k: float(v) for k, v in outcome.result.get("validation_metrics", {}).items()}
                await self._registry.mark_ready(job.model_id, job.model_version, metrics)
                await baselines.publish(self._registry, self._artifacts, job_dir, baseline_models, outcome.result)
            except OSError as exc:
                outcome = WorkerOutcome("failed", reason=f"could not store the model artifacts: {exc}")
        if outcome.status != "succeeded":
            self._artifacts.remove(output)
            await self._registry.mark_failed(job.model_id, job.model_version)
            await baselines.discard(self._registry, self._artifacts, job_dir, baseline_models)
        job.state = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED,
                     "cancelled": JobState.CANCELLED}[outcome.status]
        job.result, job.error, job.end_time = outcome.result, outcome.reason, time.time()
        await self._store.update_job(job)
        self._metrics.job_ended(job.id, job.state.value, job.end_time - (job.start_time or job.create_time))
        await self._publish_state(job, outcome.reason or f"job {outcome.status}")

    async def _publish_state(self, job: JobRecord, message: str) -> None:
        data = {"state": job.state.value, "reason": job.error}
        await self.events.publish(job.id, "state_changed", data, message)
        self._metrics.job_counts = await self._store.count_jobs_by_state()

    def _write_spec(self, job: JobRecord, train: DatasetRecord, backbone: BackboneRef, export: ExportSpec) -> None:
        job_dir = self._artifacts.job_dir(job.id)
        spec = TrainingSpec(
            job_id=job.id, backbone=backbone, train_path=str(self._datasets.rows_path(train.id)),
            labels=train.labels, output_dir=str(job_dir / "output"),
            hyperparameters=hyperparameters.resolve(job.hyperparameters),
            validation_path=str(self._datasets.rows_path(job.validation_dataset_id))
            if job.validation_dataset_id else None,
            device=self._settings.device, threads=self._settings.worker_threads or available_cpus(), export=export,
            checkpoint_dir=str(job_dir / "checkpoints"),
        )
        spec.save(job_dir / "spec.json")

    def _backbone_dirs(self) -> builtins.list[Path]:  # `list` is a method here
        return [*self._settings.backbone_dirs, self._storage_root / "backbones"]


def _check_validation_labels(train: DatasetRecord, validation: DatasetRecord) -> None:
    unknown = sorted(set(validation.labels) - set(train.labels))
    if unknown:
        raise InvalidArgument(
            f"validation dataset {validation.id!r} has labels the training dataset lacks: {', '.join(unknown)}"
        )


def _check_modality(dataset: DatasetRecord, backbone: BackboneRef) -> None:
    if dataset.modality != backbone.modality:
        raise InvalidArgument(
            f"dataset {dataset.id!r} ({dataset.name!r}) holds {dataset.modality} rows but backbone {backbone.name!r} "
            f"is for {backbone.modality} inputs; choose a backbone for {dataset.modality} (see `tuneserve backbones`)"
        )


def _check_export(export: ExportSpec, backbone: BackboneRef) -> None:
    if not 0.0 <= export.int8_max_f1_drop <= 1.0:  # NOTE: also rejects NaN
        raise InvalidArgument(
            f"export.int8_max_f1_drop = {export.int8_max_f1_drop} is out of range [0, 1] "
            "(a macro F1 difference: 0.01 = 1 point)"
        )
    if export.int8 and backbone.modality != "text":
        # NOTE: dynamic int8 slows CNNs down; their int8 path is static calibration, which does not exist yet.
        raise InvalidArgument(
            f"export.int8 is dynamic quantisation for text backbones; {backbone.name!r} is an {backbone.modality} "
            "backbone (dynamic int8 makes CNNs slower)"
        )


def _check_split(train: DatasetRecord, fraction: float) -> None:
    rare = sorted(label for label, n in train.label_counts.items() if n < 2)
    if rare:
        raise InvalidArgument(
            f"label(s) {', '.join(rare)} have fewer than 2 rows, too few for a stratified validation split; "
            "add rows or pass validation_dataset_id"
        )
    if round(train.num_rows * fraction) < len(train.labels):
        raise InvalidArgument(
            f"validation_fraction {fraction} of {train.num_rows} rows leaves fewer validation rows than the "
            f"{len(train.labels)} labels; raise validation_fraction or pass validation_dataset_id"
        )
