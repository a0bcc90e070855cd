"""Prometheus metrics on a registry of their own (never the global one), served on a separate port.

| metric | type | labels | meaning |
|---|---|---|---|
| tuneserve_rpc_requests_total | counter | method, code | RPCs finished, by full method name and gRPC status code |
| tuneserve_rpc_duration_seconds | histogram | method, code | RPC handling time (streams: until the stream ends) |
| tuneserve_predictions_total | counter | model | texts predicted, by model id |
| tuneserve_jobs | gauge | state | fine-tuning jobs in each state (from the store at scrape time) |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc_requests = Counter(
            "tuneserve_rpc_requests", "RPCs finished, by method and gRPC status code.", ["method", "code"],
            registry=self.registry,
        )
        self.rpc_duration = Histogram(
            "tuneserve_rpc_duration_seconds", "RPC handling time in seconds.", ["method", "code"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.predictions = Counter(
            "tuneserve_predictions", "Texts predicted, by model id.", ["model"], registry=self.registry
        )
        self.job_counts: dict[str, int] = {}
        self.registry.register(_JobStates(self))


class _JobStates(Collector):
    """Reads the job counts the job manager keeps current, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("tuneserve_jobs", "Fine-tuning jobs by state.", labels=["state"])
        for state, count in sorted(self._metrics.job_counts.items()):
            family.add_metric([state], count)
        yield family
