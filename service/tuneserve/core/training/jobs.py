"""Fine-tuning jobs: queue FineTune requests (admitted by admission.py), run them one worker process each, track their lifecycle
(QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED) and publish their events.

The dispatch loops outlive every job: a store that cannot be written (its disk full, PostgreSQL unreachable) loses
a running job's progress events, delays its start, and holds its end until the write goes through
(training.store_retry_seconds); nothing a job does ends the loop. Ending a job is idempotent: a job whose server
died after its training finished (even after its model was moved into place) is completed at the next start, never
trained again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tuneserve.core.data.datasets import DatasetManager
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.training import baselines
from tuneserve.core.training.admission import Admission, FineTuneParams
from tuneserve.core.training.events import EventBus
from tuneserve.core.training.publishing import JobPublisher
from tuneserve.core.training.runners.base import Runner, WorkerOutcome
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from tuneserve.metrics import Metrics
from tuneserve.settings import Settings
from tuneserve.store import STORE_OUTAGES, ArtifactStore, MetadataStore
from tuneserve.tasks import get_task
from tuneserve.types import JobEventRecord, JobRecord, JobState, Page

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# The server running a job marks it alive this often; a RUNNING job not marked for ORPHAN_AFTER_SECONDS lost its server.
HEARTBEAT_SECONDS = 2.0
ORPHAN_AFTER_SECONDS = 60.0


class JobManager:
    def __init__(
        self, settings: Settings, store: MetadataStore, artifacts: ArtifactStore, datasets: DatasetManager,
        registry: ModelRegistry, runner: Runner, metrics: Metrics,
    ) -> None:
        self._settings = settings.training
        self._store = store
        self._artifacts = artifacts
        self._registry = registry
        self._publisher = JobPublisher(artifacts, registry)
        self._admission = Admission(settings, store, artifacts, datasets, registry, self._publisher)
        self._runner = runner
        self._metrics = metrics
        self.events = EventBus(store)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._cancels: dict[str, asyncio.Event] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._running: set[str] = set()
        self._admitting = 0  # FineTunes past the queue bound's check and not queued yet

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover after a restart, then start the dispatch loops."""
        # NOTE: on a database shared by several servers, a RUNNING job whose server still beats is not an orphan
        for job in await self._store.orphaned_jobs(time.time() - ORPHAN_AFTER_SECONDS):
            reason = "the server stopped while the job was running"
            if await self._publisher.trained(job):  # NOTE: only its end was lost: complete it, train nothing again
                await self._requeue(
                    job, f"{reason}; its training had finished: the job completes without training again"
                )
            elif job.restarts < self._settings.max_restarts:
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
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # NOTE: never expected (the loops catch everything); a shutdown still completes
                log.exception("a job manager task had failed")

    # -- requests -------------------------------------------------------------------------------------------------

    async def submit(self, params: FineTuneParams) -> JobRecord:
        if not params.dataset_id:
            raise InvalidArgument("dataset_id is required")
        # NOTE: check and reserve with no await in between: concurrent FineTunes cannot all pass the check
        waiting = self._queue.qsize() + self._admitting
        if waiting >= self._settings.max_queued_jobs:
            raise ResourceExhausted(f"{waiting} jobs are already queued (limit max_queued_jobs)")
        self._admitting += 1
        try:
            job = await self._admission.admit(params)
            await self._note(job, "job queued")
            self._queue.put_nowait(job.id)
            return job
        finally:
            self._admitting -= 1

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
            except STORE_OUTAGES as exc:
                log.warning("cannot start job %s yet: %s", job_id, exc.message)
                await asyncio.sleep(self._settings.store_retry_seconds)
                self._queue.put_nowait(job_id)
                continue
            except Exception:  # NOTE: the job stays QUEUED in the store: the next start runs it
                log.exception("cannot start job %s", job_id)
                continue
            if job is None:
                continue  # cancelled while it waited, or another server runs it
            try:
                await self._run(job)
            except Exception:  # NOTE: a bug in one job must not end this loop: the jobs after it would wait forever
                log.exception("job %s failed unexpectedly", job_id)
                outcome = WorkerOutcome("failed", reason="internal error while running the job (see the server log)")
                try:
                    await self._finish(job, outcome, patient=True)
                except Exception:
                    log.exception("job %s: its end could not be recorded; the next start recovers it", job_id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                for job_id in await self._store.beat_jobs(sorted(self._running), time.time()):
                    if job_id in self._cancels:  # cancelled through another server sharing the database
                        self._cancels[job_id].set()
            except STORE_OUTAGES as exc:
                log.warning("job heartbeat not stored: %s", exc.message)

    async def _run(self, job: JobRecord) -> None:
        cancel = self._cancels[job.id] = asyncio.Event()
        self._running.add(job.id)
        job_dir = self._artifacts.job_dir(job.id)
        try:
            await self._note(job, "job started")
            outcome = self._publisher.finished_run(job_dir / "output", self._publisher.published(job))
            outcome = outcome or await self._run_worker(job, job_dir / "spec.json", cancel)
            outcome = await self._run_baselines(job, outcome, cancel)
        except asyncio.CancelledError:  # the server is shutting down; the runner has preempted the worker
            try:
                if cancel.is_set():  # NOTE: a cancel that had not finished yet still ends the job, not the shutdown
                    await self._finish(job, WorkerOutcome("cancelled", reason="cancelled by request"))
                else:
                    await self._requeue(
                        job, "server shutting down; the job resumes from its checkpoint after the restart"
                    )
            except STORE_OUTAGES as exc:  # NOTE: it stays RUNNING in the store: the next start recovers it
                log.warning("job %s: its stop could not be recorded: %s", job.id, exc.message)
            raise
        finally:
            self._running.discard(job.id)
            self._cancels.pop(job.id, None)
            self._metrics.job_ended(job.id)  # its tuneserve_training_* series go with it
        await self._finish(job, outcome, patient=True)

    async def _run_worker(self, job: JobRecord, spec: Path, cancel: asyncio.Event, prefix: str = "") -> WorkerOutcome:
        """Run the spec's worker; one that died without reporting an error starts again, resuming from its last
        checkpoint, while the job has restarts left (training.max_restarts)."""
        log_path = self._artifacts.job_dir(job.id) / "worker.log"
        while True:
            outcome = await self._runner.run(spec, log_path, lambda e: self._on_worker_event(job, e, prefix), cancel)
            if not outcome.retryable or cancel.is_set() or job.restarts >= self._settings.max_restarts:
                return outcome
            job.restarts += 1
            with contextlib.suppress(*STORE_OUTAGES):  # NOTE: the count is stored with the job's next write
                await self._store.update_job(job)
            await self._note(
                job, f"{prefix}{outcome.reason}; restarting it from its last checkpoint "
                f"(restart {job.restarts} of {self._settings.max_restarts})"
            )

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
            run = self._publisher.finished_run(
                baselines.output_dir(job_dir, model.kind), self._publisher.baseline_published(model)
            )
            if run is None:
                spec = baselines.write_spec(job_dir, model.kind)
                with contextlib.suppress(*STORE_OUTAGES):
                    await self.events.publish(
                        job.id, "baseline", {"kind": model.kind}, prefix + baselines.DESCRIPTIONS[model.kind]
                    )
                run = await self._run_worker(job, spec, cancel, prefix)
            if run.status != "succeeded":
                return WorkerOutcome(run.status, reason=prefix + run.reason if run.status == "failed" else run.reason)
            entries.append(baselines.entry(model.kind, model.id, run.result))
        verdict = baselines.verdict(outcome.result, entries, get_task(job.task))
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
        except STORE_OUTAGES as exc:  # NOTE: training goes on through a database outage; only this event is lost
            log.warning("job %s: %s event not stored: %s", job.id, kind, exc.message)

    async def _finish(self, job: JobRecord, outcome: WorkerOutcome, *, patient: bool = False) -> None:
        """Publish a succeeded job's models (or discard a failed one's), then record its end. Each step is idempotent,
        so a job whose server died half-way is finished again at the next start. `patient` (the dispatch loop): a step
        the store refuses (its disk full, unreachable) is tried again every training.store_retry_seconds until it
        goes through; otherwise the error is raised (an RPC's caller gets it)."""
        self._publisher.remove_checkpoints(job)
        if outcome.status == "succeeded":
            outcome = await self._step(job, patient, self._publisher.publish, job, outcome)
        if outcome.status != "succeeded":
            await self._step(job, patient, self._publisher.discard, job)
        await self._step(job, patient, self._record_end, job, outcome)
        self._metrics.job_ended(job.id, job.state.value, job.end_time - (job.start_time or job.create_time))

    async def _step(
        self, job: JobRecord, patient: bool, step: Callable[..., Awaitable[_T]], *args: Any
    ) -> _T:
        waiting_since = 0.0
        while True:
            try:
                result = await step(*args)
            except STORE_OUTAGES as exc:
                if not patient:
                    raise
                if not waiting_since:
                    waiting_since = time.monotonic()
                    log.warning("cannot record the end of job %s yet, trying again every %g s: %s", job.id,
                                self._settings.store_retry_seconds, exc.message)
                await asyncio.sleep(self._settings.store_retry_seconds)
                continue
            if waiting_since:
                log.info("job %s: recorded after %.1f s", job.id, time.monotonic() - waiting_since)
            return result

    async def _record_end(self, job: JobRecord, outcome: WorkerOutcome) -> None:
        job.state = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED,
                     "cancelled": JobState.CANCELLED}[outcome.status]
        job.result, job.error, job.end_time = outcome.result, outcome.reason, job.end_time or time.time()
        await self._store.update_job(job)
        await self._publish_state(job, outcome.reason or f"job {outcome.status}")

    async def _publish_state(self, job: JobRecord, message: str) -> None:
        data = {"state": job.state.value, "reason": job.error}
        await self.events.publish(job.id, "state_changed", data, message)
        self._metrics.job_counts = await self._store.count_jobs_by_state()

    async def _note(self, job: JobRecord, message: str) -> None:
        """A state event the job can do without: while the store cannot be written, it goes on and the event is lost."""
        try:
            await self._publish_state(job, message)
        except STORE_OUTAGES as exc:
            log.warning("job %s: event %r not stored: %s", job.id, message, exc.message)
