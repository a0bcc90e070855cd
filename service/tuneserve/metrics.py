"""Prometheus metrics on a registry of their own (never the global one), served on a separate port.

Durations are histograms (aggregate them across replicas with `histogram_quantile(q, sum by (le, ...) (rate(...)))`).
Every label has a bounded set of values:

| metric | type | labels | meaning |
|---|---|---|---|
| tuneserve_rpc_requests_total | counter | method, code | RPCs finished, by full method name and gRPC status code |
| tuneserve_rpc_duration_seconds | histogram | method, code | RPC handling time (streams: until the stream ends) |
| tuneserve_predictions_total | counter | model | texts predicted, by model id |
| tuneserve_inference_queue_seconds | histogram | model, version, provider | time a request waited before its batch ran |
| tuneserve_inference_batch_size | histogram | model, version, provider | texts per batch run by ONNX Runtime |
| tuneserve_inference_compute_seconds | histogram | model, version, provider | time one batch took to run (tokenize + ONNX Runtime) |
| tuneserve_models_loaded | gauge | | ONNX Runtime sessions open in the model cache |
| tuneserve_model_load_seconds | histogram | outcome | time to load a model version (session + tokenizer + warm-up); outcome ok/error |
| tuneserve_model_evictions_total | counter | | versions closed because the cache was full (least recently used first) |
| tuneserve_artifact_checksum_failures_total | counter | | loads refused because a served file differs from its published sha256 |
| tuneserve_model_size_bytes | gauge | model, version, provider | ONNX graph + weights on disk of each loaded version |
| tuneserve_model_load_rss_bytes | gauge | model, version, provider | server resident memory growth while each loaded version loaded |
| tuneserve_jobs | gauge | state | fine-tuning jobs in each state (all five states, 0 when none) |
| tuneserve_job_duration_seconds | histogram | state | start (or queueing, if it never ran) to end of each job, by final state |
| tuneserve_training_step | gauge | job_id | optimizer steps done by a running job |
| tuneserve_training_max_steps | gauge | job_id | optimizer steps the running job takes in all |
| tuneserve_training_epoch | gauge | job_id | epochs done (fractional) |
| tuneserve_training_train_loss | gauge | job_id | latest training loss |
| tuneserve_training_learning_rate | gauge | job_id | latest learning rate |
| tuneserve_training_samples_per_second | gauge | job_id | training throughput since the previous progress event |
| tuneserve_training_validation_loss | gauge | job_id | latest validation loss |
| tuneserve_training_validation_metric | gauge | job_id, metric | latest validation metrics (accuracy, macro_f1, ...) |
| tuneserve_gpu_info | gauge | gpu, name | 1 per GPU NVML sees (only with a GPU) |
| tuneserve_gpu_utilization_ratio | gauge | gpu | share of time the GPU was busy (0-1; only with a GPU) |
| tuneserve_gpu_memory_used_bytes | gauge | gpu | GPU memory in use, all processes (only with a GPU) |
| tuneserve_gpu_memory_total_bytes | gauge | gpu | GPU memory in all (only with a GPU) |
| process_* | | | the server process: resident/virtual memory, CPU seconds, open fds, start time |
| python_info | gauge | version, ... | the Python running the server |

Label values: method = the RPCs the server registers; code = gRPC status code names; model in
tuneserve_predictions_total = model ids predicted since start; (model, version, provider) = the versions loaded now
(their series go when the cache closes them, so at most inference.max_loaded_models); job_id = the jobs running now
(at most training.max_concurrent_jobs: a job's series go when it ends); metric = the 5 validation metrics; state =
the 5 job states; outcome = ok/error; gpu = GPU indices.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

from tuneserve.collectors import JobStatesCollector, NvmlCollector, TrainingCollector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_JOB_BUCKETS = (10, 30, 60, 300, 600, 1800, 3600, 2 * 3600, 4 * 3600, 12 * 3600, 24 * 3600)
_INFERENCE_LABELS = ("model", "version", "provider")


class Metrics:
    """Every metric the server exports, as attributes; `registry` is what the /metrics endpoint serves."""

    def __init__(self, *, gpu: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # -- RPC (grpc/interceptors.py) -------------------------------------------------------------------------
        self.rpc_requests = Counter(
            "tuneserve_rpc_requests", "RPCs finished, by method and gRPC status code.", ["method", "code"], registry=r
        )
        self.rpc_duration = Histogram(
            "tuneserve_rpc_duration_seconds", "RPC handling time in seconds.", ["method", "code"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        # -- inference (core/serving/inference.py, core/serving/batching.py) ----------------------------------------------------
        self.predictions = Counter("tuneserve_predictions", "Texts predicted, by model id.", ["model"], registry=r)
        self.inference_queue_seconds = Histogram(
            "tuneserve_inference_queue_seconds", "Seconds a Predict request waited (batcher queue) before the batch "
            "holding its texts started to run.", _INFERENCE_LABELS, buckets=_QUEUE_BUCKETS, registry=r,
        )
        """Observe once per request: `.labels(model_id, str(version), provider).observe(seconds)`."""
        self.inference_batch_size = Histogram(
            "tuneserve_inference_batch_size", "Texts in each batch run by ONNX Runtime.", _INFERENCE_LABELS,
            buckets=_BATCH_BUCKETS, registry=r,
        )
        """Observe once per batch run: `.labels(model_id, str(version), provider).observe(len(texts))`."""
        self.inference_compute_seconds = Histogram(
            "tuneserve_inference_compute_seconds", "Seconds one batch took to run (tokenize + ONNX Runtime).",
            _INFERENCE_LABELS, buckets=_LATENCY_BUCKETS, registry=r,
        )
        """Observe once per batch run, around `runtime.predict(texts)`."""
        # -- model cache (core/serving/cache.py) -----------------------------------------------------------------
        self.models_loaded = Gauge("tuneserve_models_loaded", "ONNX Runtime sessions open in the model cache.",
                                   registry=r)
        self.model_load_seconds = Histogram(
            "tuneserve_model_load_seconds", "Seconds to load a model version (session, tokenizer, warm-up).",
            ["outcome"], buckets=_LOAD_BUCKETS, registry=r,
        )
        self.model_evictions = Counter(
            "tuneserve_model_evictions", "Model versions closed because the cache was full.", registry=r
        )
        self.artifact_checksum_failures = Counter(
            "tuneserve_artifact_checksum_failures", "Model loads refused: a served file differs from the sha256 "
            "recorded when the version was published (the version is marked FAILED).", registry=r,
        )
        self.model_size_bytes = Gauge(
            "tuneserve_model_size_bytes", "ONNX graph and weights on disk of each loaded model version.",
            _INFERENCE_LABELS, registry=r,
        )
        self.model_load_rss_bytes = Gauge(
            "tuneserve_model_load_rss_bytes", "Growth of the server's resident memory while each loaded model "
            "version loaded (approximate: concurrent loads and freed memory blur it).", _INFERENCE_LABELS, registry=r,
        )
        # -- training (core/training/jobs.py) ----------------------------------------------------------------------------
        self.job_states = JobStatesCollector()
        r.register(self.job_states)
        self.job_duration_seconds = Histogram(
            "tuneserve_job_duration_seconds", "Seconds from a job's start (or creation, if it never ran) to its end, "
            "by final state.", ["state"], buckets=_JOB_BUCKETS, registry=r,
        )
        self.training = TrainingCollector()
        r.register(self.training)
        # -- host -----------------------------------------------------------------------------------------------
        self.gpu = NvmlCollector() if gpu else None
        if self.gpu is not None and self.gpu.available:
            r.register(self.gpu)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    @property
    def job_counts(self) -> dict[str, int]:
        return self.job_states.counts

    @job_counts.setter
    def job_counts(self, counts: dict[str, int]) -> None:
        self.job_states.counts = counts

    def forget_model_version(self, model_id: str, version: str, provider: str) -> None:
        """Drop an unloaded version's inference and memory series (so they stay bounded by the cache size)."""
        labels = (model_id, version, provider)
        for metric in (self.inference_queue_seconds, self.inference_batch_size, self.inference_compute_seconds,
                       self.model_size_bytes, self.model_load_rss_bytes):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)

    def job_event(self, job_id: str, kind: str, data: dict[str, object]) -> None:
        """A worker event of a running job (progress and evaluation update its `tuneserve_training_*` series)."""
        self.training.update(job_id, kind, data)

    def job_ended(self, job_id: str, state: str | None = None, seconds: float | None = None) -> None:
        """Drop the job's `tuneserve_training_*` series; with a final state, record its duration."""
        self.training.forget(job_id)
        if state is not None and seconds is not None:
            self.job_duration_seconds.labels(state).observe(max(0.0, seconds))


def process_rss_bytes() -> int | None:
    """This process's resident memory (Linux /proc; None elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
