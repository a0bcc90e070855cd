"""A job's results on disk: which of its runs had finished, moving its models into the registry, and discarding them.

Every operation is idempotent, so that a job whose server died half-way through its end is ended again at the next
start: a run is finished once its output holds metrics.json (the worker's last write) or once that output has been
moved into place as its model version; publishing a version already in place only marks it READY.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tuneserve.core.registry import ModelRegistry
from tuneserve.core.training import baselines
from tuneserve.core.training.runners.base import WorkerOutcome
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.store import ArtifactStore
from tuneserve.types import JobRecord, ModelRecord


class JobPublisher:
    def __init__(self, artifacts: ArtifactStore, registry: ModelRegistry) -> None:
        self._artifacts = artifacts
        self._registry = registry

    def finished_run(self, output: Path, published: Path) -> WorkerOutcome | None:
        """The outcome of a run of a job that finished before the job was interrupted (a job with baselines is several
        runs), from its output directory or, once moved into place, its model version's (`published`). Any other
        output directory is the remains of an unfinished run and is removed."""
        for done in (output, published):
            try:
                return WorkerOutcome("succeeded", result=json.loads((done / ARTIFACTS["metrics"]).read_text()))
            except (OSError, ValueError):
                continue
        self._artifacts.remove(output)
        return None

    def published(self, job: JobRecord) -> Path:
        return self._artifacts.version_dir(job.model_id, job.model_version)

    def baseline_published(self, model: ModelRecord) -> Path:
        return self._artifacts.version_dir(model.id, model.versions[-1].version)

    async def trained(self, job: JobRecord) -> bool:
        """Whether every run of the job (its fine-tune, then its baselines) had finished."""
        job_dir = self._artifacts.job_dir(job.id)
        if self.finished_run(job_dir / "output", self.published(job)) is None:
            return False
        for model in await baselines.of_job(self._registry, job.id):
            if self.finished_run(baselines.output_dir(job_dir, model.kind), self.baseline_published(model)) is None:
                return False
        return True

    def remove_checkpoints(self, job: JobRecord) -> None:
        for checkpoints in self._artifacts.job_dir(job.id).glob("checkpoints*"):  # left by an unfinished run
            self._artifacts.remove(checkpoints)

    async def publish(self, job: JobRecord, outcome: WorkerOutcome) -> WorkerOutcome:
        """Move the job's models into place and mark them READY: the outcome, or a failed one when their files cannot
        be moved. A store error (the version not marked READY) is raised: publishing again completes it."""
        job_dir = self._artifacts.job_dir(job.id)
        # NOTE: a job with baselines is one unit: its models become READY together, or none does.
        baseline_models = await baselines.of_job(self._registry, job.id)
        try:
            await asyncio.to_thread(self._artifacts.publish_dir, job_dir / "output", self.published(job))
            metrics = {k: float(v) for k, v in outcome.result.get("validation_metrics", {}).items()}
            await self._registry.mark_ready(job.model_id, job.model_version, metrics)
            await baselines.publish(self._registry, self._artifacts, job_dir, baseline_models, outcome.result)
        except OSError as exc:
            return WorkerOutcome("failed", reason=f"could not store the model artifacts: {exc}")
        return outcome

    async def discard(self, job: JobRecord) -> None:
        """None of the job's models is ever served: their files go (even those already moved into place), their
        versions are FAILED."""
        job_dir = self._artifacts.job_dir(job.id)
        self._artifacts.remove(job_dir / "output")
        self._artifacts.remove(self.published(job))
        await self._registry.mark_failed(job.model_id, job.model_version)
        await baselines.discard(self._registry, self._artifacts, job_dir, await baselines.of_job(self._registry, job.id))
