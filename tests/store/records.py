"""Metadata records for the store's tests and `bench/store_latency.py`: the n-th record of each kind, stamped from `at`,
so that a test can build the same record again to compare with what the store returns."""

from __future__ import annotations

from typing import Any

from tuneserve.types import DatasetRecord, JobEventRecord, JobRecord, JobState, ModelRecord

T0 = 1_764_000_000.123456  # a Unix time with microseconds: a 32-bit float column would round it by a minute


def dataset(n: int, *, at: float = T0) -> DatasetRecord:
    return DatasetRecord(f"ds-{n}", f"news-{n}.csv", "csv", "text", 10 + n, ["a", "b"], {"a": 6, "b": 4 + n}, 1,
                         3_000_000_000 + n, "f" * 64, at + n)


def job(n: int, state: JobState = JobState.QUEUED, dataset_id: str = "ds-1", *, at: float = T0) -> JobRecord:
    return JobRecord(id=f"job-{n}", state=state, dataset_id=dataset_id, validation_dataset_id="",
                     backbone="tiny-bert", hyperparameters={"epochs": 2, "lr": 1e-3}, model_id="model-1",
                     model_version=n, create_time=at + n)


def model(n: int, *, at: float = T0, **fields: Any) -> ModelRecord:
    """fields: ModelRecord's optional ones (kind, source_job_id, ...)."""
    return ModelRecord(f"model-{n}", f"m{n}", "text", "tiny-bert", ["a", "b"], at + n, **fields)


def progress(job_id: str, sequence: int, *, at: float = T0) -> JobEventRecord:
    """The job's sequence-th event: a progress report at `at` + sequence seconds."""
    return JobEventRecord(job_id, sequence, at + sequence, "progress", {"step": sequence}, f"step {sequence}")

