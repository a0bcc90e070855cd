"""tuneserve.metrics: what each part of the server records, read back from the registry's text exposition."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerThread
from tuneserve.collectors import NvmlCollector
from tuneserve.metrics import Metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Samples:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def test_jobs_by_state_exports_every_state() -> None:
    metrics = Metrics()
    metrics.job_counts = {"SUCCEEDED": 3, "RUNNING": 1}
    jobs = {dict(labels)["state"]: v for (name, labels), v in scrape(metrics).items() if name == "tuneserve_jobs"}
    assert jobs == {"QUEUED": 0, "RUNNING": 1, "SUCCEEDED": 3, "FAILED": 0, "CANCELLED": 0}


def test_training_series_follow_worker_events_and_go_when_the_job_ends() -> None:
    metrics = Metrics()
    metrics.job_event("job_a", "progress", {"step": 5, "total_steps": 50, "epoch": 0.5, "train_loss": 1.25,
                                            "learning_rate": 2e-5, "samples_per_second": 80.0, "eta_seconds": 9})
    metrics.job_event("job_a", "evaluation", {"step": 5, "epoch": 0.5, "validation_loss": 1.5,
                                              "metrics": {"accuracy": 0.5, "macro_f1": 0.4}})
    metrics.job_event("job_a", "checkpoint", {"step": 5, "is_best": True, "metric": 0.4})
    metrics.job_event("job_b", "progress", {"step": 1, "total_steps": 10, "epoch": 0.1, "train_loss": 2.0,
                                            "learning_rate": 0.0, "samples_per_second": 10.0})
    samples = scrape(metrics)
    a = (("job_id", "job_a"),)
    assert samples[("tuneserve_training_step", a)] == 5 and samples[("tuneserve_training_max_steps", a)] == 50
    assert samples[("tuneserve_training_train_loss", a)] == 1.25
    assert samples[("tuneserve_training_validation_loss", a)] == 1.5
    assert samples[("tuneserve_training_samples_per_second", a)] == 80
    assert samples[("tuneserve_training_validation_metric", (("job_id", "job_a"), ("metric", "macro_f1")))] == 0.4
    assert ("tuneserve_training_validation_loss", (("job_id", "job_b"),)) not in samples  # not evaluated yet

    metrics.job_ended("job_a", "SUCCEEDED", 42.0)
    metrics.job_ended("job_b")  # e.g. the server stopping: no final state, no duration
    samples = scrape(metrics)
    assert not [key for key in samples if key[0].startswith("tuneserve_training_")]
    assert samples[("tuneserve_job_duration_seconds_count", (("state", "SUCCEEDED"),))] == 1
    assert samples[("tuneserve_job_duration_seconds_sum", (("state", "SUCCEEDED"),))] == 42


def test_inference_series_are_per_version_and_forgotten_on_unload() -> None:
    metrics = Metrics()
    labels = ("m1", "2", "CPUExecutionProvider")
    metrics.inference_queue_seconds.labels(*labels).observe(0.003)
    metrics.inference_batch_size.labels(*labels).observe(16)
    metrics.inference_compute_seconds.labels(*labels).observe(0.02)
    metrics.model_size_bytes.labels(*labels).set(1000)
    key = (("model", "m1"), ("provider", "CPUExecutionProvider"), ("version", "2"))
    samples = scrape(metrics)
    assert samples[("tuneserve_inference_queue_seconds_count", key)] == 1
    assert samples[("tuneserve_inference_batch_size_sum", key)] == 16
    assert samples[("tuneserve_inference_compute_seconds_sum", key)] == pytest.approx(0.02)
    assert samples[("tuneserve_model_size_bytes", key)] == 1000
    metrics.forget_model_version(*labels)
    metrics.forget_model_version(*labels)  # twice is harmless
    assert not [k for k in scrape(metrics) if k[0].startswith(("tuneserve_inference_", "tuneserve_model_size"))]


def test_process_metrics_on_our_registry() -> None:
    samples = scrape(Metrics())
    assert samples[("process_resident_memory_bytes", ())] > 10e6
    assert "process_cpu_seconds_total" in names(samples) and "python_info" in names(samples)


def test_gpu_collector_exports_nothing_without_nvml() -> None:
    collector = NvmlCollector()
    if collector.available:
        pytest.skip("a GPU is present: test_gpu_metrics_with_a_gpu covers it")
    assert list(collector.collect()) == []
    assert not [name for name in names(scrape(Metrics())) if name.startswith("tuneserve_gpu")]


def test_gpu_metrics_with_a_gpu() -> None:
    if not NvmlCollector().available:
        pytest.skip("no GPU: NVML cannot initialise here")
    samples = scrape(Metrics())
    assert set(NvmlCollector.METRICS) <= names(samples)
    for (name, labels), value in samples.items():
        if name == "tuneserve_gpu_utilization_ratio":
            assert 0 <= value <= 1
        if name == "tuneserve_gpu_memory_total_bytes":
            assert value > 1e9 and samples[("tuneserve_gpu_memory_used_bytes", labels)] <= value


def test_docs_and_docstring_document_every_exposed_metric(server: ServerThread) -> None:
    import tuneserve.metrics

    assert server.app is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{server.app.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = [line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE ")]
    # NOTE: `X_created` (the creation time of counter/histogram X) comes as a gauge family of its own
    exposed = {name for name, _ in families if not name.endswith("_created")}
    exposed |= set(NvmlCollector.METRICS)
    section = (Path(__file__).resolve().parents[1] / "docs" / "operations" / "metrics.md").read_text()
    docstring = tuneserve.metrics.__doc__ or ""
    for name in sorted(exposed):
        if name.startswith("process_"):
            assert "`process_*`" in section and "process_*" in docstring
            continue
        assert f"`{name}`" in section, f"docs/operations/metrics.md does not list {name}"
        assert f"| {name} |" in docstring, f"tuneserve.metrics' docstring does not list {name}"
