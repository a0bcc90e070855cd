"""Custom Prometheus collectors: values read at scrape time instead of kept in client-library children.

- `JobStatesCollector`: jobs per state, from the counts the job manager keeps current.
- `TrainingCollector`: per-job progress of the jobs running now. A job's series exist only while it runs, so their
  number is bounded by `training.max_concurrent_jobs` (the maintainers' advice for series that come and go).
- `NvmlCollector`: GPU utilisation and memory through NVML (nvidia-ml-py). Where NVML cannot start (no driver, no
  GPU, the package missing) it yields nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from tuneserve.types import JobState

log = logging.getLogger(__name__)


class JobStatesCollector(Collector):
    """`tuneserve_jobs{state}`: every state is exported, 0 when no job is in it, so rates and alerts see it."""

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts: dict[str, int] = counts or {}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("tuneserve_jobs", "Fine-tuning jobs by state.", labels=["state"])
        counts = dict(self.counts)  # NOTE: the job manager replaces the dict; take one consistent view
        for state in JobState:
            family.add_metric([state.value], counts.get(state.value, 0))
        yield family


@dataclass
class JobProgress:
    """The latest values a running job's worker reported; None until the first event that carries them."""

    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    train_loss: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    validation_loss: float | None = None
    validation_metrics: dict[str, float] = field(default_factory=dict)


# (metric name, help, JobProgress attribute)
_JOB_GAUGES = (
    ("tuneserve_training_step", "Optimizer steps done by the running job.", "step"),
    ("tuneserve_training_max_steps", "Optimizer steps the running job will take in all.", "max_steps"),
    ("tuneserve_training_epoch", "Epochs done by the running job (fractional).", "epoch"),
    ("tuneserve_training_train_loss", "Latest training loss of the running job.", "train_loss"),
    ("tuneserve_training_learning_rate", "Latest learning rate of the running job.", "learning_rate"),
    ("tuneserve_training_samples_per_second", "Training throughput of the running job since its last progress event.",
     "samples_per_second"),
    ("tuneserve_training_validation_loss", "Latest validation loss of the running job.", "validation_loss"),
)


class TrainingCollector(Collector):
    def __init__(self) -> None:
        self._jobs: dict[str, JobProgress] = {}
        self._lock = threading.Lock()  # NOTE: the HTTP server scrapes from its own thread

    def update(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Apply one worker event (`progress` and `evaluation` carry values; other kinds are ignored)."""
        if kind not in ("progress", "evaluation"):
            return
        with self._lock:
            job = self._jobs.setdefault(job_id, JobProgress())
            if kind == "progress":
                job.step = int(data.get("step", job.step))
                job.max_steps = int(data.get("total_steps", job.max_steps))
                job.epoch = float(data.get("epoch", job.epoch))
                for name in ("train_loss", "learning_rate", "samples_per_second"):
                    if name in data:
                        setattr(job, name, float(data[name]))
            else:
                if "validation_loss" in data:
                    job.validation_loss = float(data["validation_loss"])
                job.validation_metrics.update({str(k): float(v) for k, v in data.get("metrics", {}).items()})

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def jobs(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            jobs = {job_id: JobProgress(**{**vars(p), "validation_metrics": dict(p.validation_metrics)})
                    for job_id, p in self._jobs.items()}
        for name, doc, attribute in _JOB_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["job_id"])
            for job_id, progress in sorted(jobs.items()):
                value = getattr(progress, attribute)
                if value is not None:
                    family.add_metric([job_id], float(value))
            yield family
        family = GaugeMetricFamily(
            "tuneserve_training_validation_metric", "Latest validation metrics of the running job (accuracy, "
            "macro_f1, macro_precision, macro_recall, weighted_f1).", labels=["job_id", "metric"],
        )
        for job_id, progress in sorted(jobs.items()):
            for metric, value in sorted(progress.validation_metrics.items()):
                family.add_metric([job_id, metric], value)
        yield family


class NvmlCollector(Collector):
    """GPU utilisation and memory of every GPU NVML sees (the ones the container was given)."""

    METRICS = ("tuneserve_gpu_info", "tuneserve_gpu_utilization_ratio", "tuneserve_gpu_memory_used_bytes",
               "tuneserve_gpu_memory_total_bytes")
    """The sample names it exports when a GPU is present."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self._nvml = pynvml
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded...
            log.debug("no GPU metrics: NVML unavailable (%s)", exc)

    @property
    def available(self) -> bool:
        return self._nvml is not None and bool(self._handles)

    def collect(self) -> Iterator[Metric]:
        if not self.available:
            return
        nvml = self._nvml
        info = InfoMetricFamily("tuneserve_gpu", "GPUs NVML sees.", labels=["gpu"])
        util = GaugeMetricFamily("tuneserve_gpu_utilization_ratio", "Share of the last sample period the GPU was "
                                 "busy running kernels (0-1).", labels=["gpu"])
        used = GaugeMetricFamily("tuneserve_gpu_memory_used_bytes", "GPU memory in use (all processes).",
                                 labels=["gpu"])
        total = GaugeMetricFamily("tuneserve_gpu_memory_total_bytes", "GPU memory in all.", labels=["gpu"])
        for index, handle in enumerate(self._handles):
            gpu = str(index)
            try:
                name = nvml.nvmlDeviceGetName(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            except nvml.NVMLError as exc:
                log.debug("GPU %s: NVML query failed (%s)", gpu, exc)
                continue
            info.add_metric([gpu], {"name": name if isinstance(name, str) else name.decode()})
            util.add_metric([gpu], rates.gpu / 100.0)
            used.add_metric([gpu], float(memory.used))
            total.add_metric([gpu], float(memory.total))
        yield from (info, util, used, total)
