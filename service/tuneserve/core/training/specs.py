"""The worker's spec of a queued job (`engines.training.spec.TrainingSpec`), from its record, its training dataset and
its backbone: the dataset's task and input shape, the resolved hyperparameters, the paths in the job directory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tuneserve.core.training import hyperparameters
from tuneserve.engines.training.spec import BackboneRef, ExportSpec, TrainingSpec
from tuneserve.types import DatasetRecord, JobRecord


def job_spec(
    job: JobRecord, train: DatasetRecord, backbone: BackboneRef, export: ExportSpec, *, job_dir: Path,
    rows_path: dict[str, Path], device: Literal["auto", "cpu", "cuda"], threads: int,
) -> TrainingSpec:
    """`rows_path`: the data.jsonl of the training and (when the job has one) the validation dataset, by id. A job
    whose early stopping was chosen automatically also stops at the first sign of overfitting (`auto`'s rule)."""
    auto_fields = job.hyperparameters.get(hyperparameters.AUTO_KEY, [])
    return TrainingSpec(
        job_id=job.id, backbone=backbone, train_path=str(rows_path[train.id]), labels=train.labels,
        output_dir=str(job_dir / "output"), hyperparameters=hyperparameters.from_record(job.hyperparameters),
        validation_path=str(rows_path[job.validation_dataset_id]) if job.validation_dataset_id else None,
        device=device, threads=threads, export=export, checkpoint_dir=str(job_dir / "checkpoints"),
        task=train.task, text_pairs=train.text_pairs, stop_on_overfit="early_stopping_patience" in auto_fields,
    )
