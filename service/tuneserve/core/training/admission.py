"""Admitting a FineTune request: everything between the request and a QUEUED job.

The request's hyperparameters, search and baselines are resolved and checked against the server's limits, its datasets
and backbone looked up, and the fields it left unset chosen from the data (`auto`); then its model version (and each
baseline's) is registered TRAINING, the worker's spec is written into the job directory and the job is recorded. A
request refused by a check leaves nothing behind; one whose spec or record cannot be written (e.g. DiskFull) removes
the job directory and discards the versions it registered. The job manager (jobs.py) bounds the queue and queues the
admitted job.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneserve.core.data.datasets import DatasetManager
from tuneserve.core.ids import new_id
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.training import auto, baselines, checks, hyperparameters, searching
from tuneserve.core.training.publishing import JobPublisher
from tuneserve.core.training.specs import job_spec
from tuneserve.cpus import available_cpus
from tuneserve.engines.backbones import num_layers, resolve_backbone
from tuneserve.engines.training.spec import BackboneRef, ExportSpec, SearchSpec
from tuneserve.errors import TuneServeError
from tuneserve.settings import Settings
from tuneserve.store import STORE_OUTAGES, ArtifactStore, MetadataStore
from tuneserve.tasks import get_task
from tuneserve.types import DatasetRecord, JobRecord, JobState

log = logging.getLogger(__name__)


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
    search: int = 0                  # > 0: this many trials over the hyperparameters left unset (Optuna TPE, pruned)
    search_budget_seconds: float = 0.0  # 0 = training.default_search_budget_seconds


class Admission:
    def __init__(
        self, settings: Settings, store: MetadataStore, artifacts: ArtifactStore, datasets: DatasetManager,
        registry: ModelRegistry, publisher: JobPublisher,
    ) -> None:
        self._settings = settings.training
        self._storage_root = settings.storage.data_dir
        self._store = store
        self._artifacts = artifacts
        self._datasets = datasets
        self._registry = registry
        self._publisher = publisher

    async def admit(self, params: FineTuneParams) -> JobRecord:
        """The request as a QUEUED job, recorded with its spec written; raises the first check it fails."""
        hp = hyperparameters.resolve(params.hyperparameters)
        checks.check_processes(hp, self._settings.processes_per_job * self._settings.nodes_per_job)
        baseline_kinds = baselines.validate(params.baselines, hp)
        search = searching.resolve(
            params.search, params.search_budget_seconds, params.hyperparameters, hp.seed, self._settings
        )
        train = await self._datasets.get(params.dataset_id)
        hp = hyperparameters.for_task(hp, get_task(train.task))
        hyperparameters.check_pairs(hp, train.text_pairs)
        validation = await self._datasets.get(params.validation_dataset_id) if params.validation_dataset_id else None
        backbone = resolve_backbone(
            params.backbone, allowed_dirs=self._backbone_dirs(), allow_hub=self._settings.allow_hub
        )
        shape = auto.DataShape(train.num_rows, train.task, dict(train.label_counts),
                               validation.num_rows if validation else None)
        hp, chosen = hyperparameters.with_auto(hp, params.hyperparameters, shape, text=backbone.modality == "text")
        checks.check_datasets(train, validation, backbone, hp.validation_fraction)
        checks.check_export(params.export, backbone)
        hyperparameters.check_layers(hp, num_layers(backbone))
        job_id = new_id("job")
        if params.model_id:
            model = await self._registry.get(params.model_id)
            checks.check_model_labels(model, train)
        else:
            model = await self._registry.create(
                params.model_name or train.name, backbone.name, train.labels, backbone.modality, source_job_id=job_id,
                task=train.task, text_pairs=train.text_pairs,
            )
        version = await self._registry.add_version(model, job_id)
        await baselines.register(self._registry, baseline_kinds, name=model.name, backbone=backbone, train=train,
                                 job_id=job_id)
        job = JobRecord(
            id=job_id, state=JobState.QUEUED, dataset_id=train.id, validation_dataset_id=params.validation_dataset_id,
            backbone=backbone.name, hyperparameters={**dataclasses.asdict(hp), hyperparameters.AUTO_KEY: chosen},
            model_id=model.id,
            model_version=version.version, create_time=time.time(), task=train.task, text_pairs=train.text_pairs,
        )
        try:
            with self._artifacts.map_disk_full(f"writing the spec of job {job_id!r}"):
                self._artifacts.job_dir(job_id).mkdir(parents=True)
                self._write_spec(job, train, backbone, params.export, search)
            await self._store.add_job(job)
        except TuneServeError:  # NOTE: e.g. DiskFull: the models it registered must not stay TRAINING for good
            self._artifacts.remove(self._artifacts.job_dir(job_id))
            try:
                await self._publisher.discard(job)
            except STORE_OUTAGES as exc:
                log.warning("job %s was not queued; its model versions stay TRAINING: %s", job_id, exc.message)
            raise
        return job

    def _write_spec(
        self, job: JobRecord, train: DatasetRecord, backbone: BackboneRef, export: ExportSpec, search: SearchSpec
    ) -> None:
        job_dir, ids = self._artifacts.job_dir(job.id), [train.id, job.validation_dataset_id]
        paths = {dataset_id: self._datasets.rows_path(dataset_id) for dataset_id in ids if dataset_id}
        threads = self._settings.worker_threads or available_cpus()
        spec = job_spec(job, train, backbone, export, job_dir=job_dir, rows_path=paths, device=self._settings.device,
                        threads=threads)
        spec.search = search
        spec.save(job_dir / "spec.json")

    def _backbone_dirs(self) -> list[Path]:
        return [*self._settings.backbone_dirs, self._storage_root / "backbones"]
