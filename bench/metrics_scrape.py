"""How long a scrape of /metrics takes with 20 models loaded: measured by a real Prometheus (its own
`scrape_duration_seconds`, scraping every second) and by timing GETs of the endpoint.

The server is the real one (`create_server`: same registry, collectors and HTTP endpoint). The 20 models' series are
the ones 20 loaded, busy model versions create (3 inference histograms, 2 memory gauges and a predictions counter
each, every histogram bucket in use) plus two running fine-tunes and every RPC method with a few status codes;
loading 20 real ONNX sessions would change none of the scrape's work, only the memory the process uses.

    python -m bench.metrics_scrape [--models 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.integration.prometheus_server import PrometheusServer, prometheus_binary
from tuneserve.metrics import Metrics
from tuneserve.server import create_server
from tuneserve.settings import Settings

CODES = ("OK", "INVALID_ARGUMENT", "NOT_FOUND", "INTERNAL")


def populate(metrics: Metrics, models: int, methods: list[str]) -> None:
    for i in range(models):
        labels = (f"model_{i:02d}", "1", "CPUExecutionProvider")
        for value in (0.0004, 0.002, 0.008, 0.03, 0.2, 2.0):
            metrics.inference_queue_seconds.labels(*labels).observe(value)
            metrics.inference_compute_seconds.labels(*labels).observe(value * 10)
        for size in (1, 3, 8, 30, 100, 400):
            metrics.inference_batch_size.labels(*labels).observe(size)
        metrics.model_size_bytes.labels(*labels).set(90_000_000)
        metrics.model_load_rss_bytes.labels(*labels).set(120_000_000)
        metrics.predictions.labels(labels[0]).inc(1000)
        metrics.model_load_seconds.labels("ok").observe(1.5)
    metrics.models_loaded.set(models)
    for method in methods:
        for code in CODES:
            for value in (0.001, 0.01, 0.1, 1.0):
                metrics.rpc_requests.labels(method, code).inc()
                metrics.rpc_duration.labels(method, code).observe(value)
    for job in ("job_a", "job_b"):
        metrics.job_event(job, "progress", {"step": 10, "total_steps": 100, "epoch": 0.5, "train_loss": 0.9,
                                            "learning_rate": 5e-5, "samples_per_second": 12.0})
        metrics.job_event(job, "evaluation", {"validation_loss": 0.8, "metrics": {
            "accuracy": 0.9, "macro_f1": 0.88, "macro_precision": 0.87, "macro_recall": 0.89, "weighted_f1": 0.9}})


def get_times(url: str, n: int) -> tuple[list[float], int, int]:
    times, body = [], b""
    for _ in range(n):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
        times.append(time.perf_counter() - started)
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return times, len(body), samples


def prometheus_view(prom: PrometheusServer, window: int) -> dict[str, float]:
    def one(expr: str) -> float:
        return float(prom.query(expr)[0]["value"][1])

    return {
        "median_ms": one(f"quantile_over_time(0.5, scrape_duration_seconds[{window}s])") * 1e3,
        "max_ms": one(f"max_over_time(scrape_duration_seconds[{window}s])") * 1e3,
        "samples": one("scrape_samples_scraped"),
        "scrapes": one(f"count_over_time(scrape_duration_seconds[{window}s])"),
    }


async def main(models: int, seconds: int) -> None:
    if prometheus_binary() is None:
        raise SystemExit("prometheus not installed (apt-get install prometheus)")
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        settings.server.host, settings.server.port = "127.0.0.1", 0
        settings.server.metrics_host, settings.server.metrics_port = "127.0.0.1", 0
        settings.storage.data_dir = Path(tmp) / "data"
        app = await create_server(settings)
        url = f"http://127.0.0.1:{app.metrics_port}/metrics"
        methods = [f"/{service}/{method.name}" for service, method in _methods()]
        prom = PrometheusServer(Path(tmp) / "prometheus", [f"127.0.0.1:{app.metrics_port}"])
        try:
            await asyncio.to_thread(prom.wait_ready)
            rows = []
            for label, count in (("fresh server (no models)", 0), (f"{models} models loaded", models)):
                if count:
                    populate(app.metrics, count, methods)
                await asyncio.sleep(seconds + 1)
                view = await asyncio.to_thread(prometheus_view, prom, seconds)
                times, size, samples = await asyncio.to_thread(get_times, url, 200)
                rows.append((label, view, statistics.median(times) * 1e3,
                             sorted(times)[int(len(times) * 0.99) - 1] * 1e3, size, samples))
        finally:
            prom.close()
            await app.stop(0)
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| server | Prometheus scrape_duration_seconds median / max | scrapes | samples | GET /metrics median / p99 "
          "| body |")
    print("|---|---|---|---|---|---|")
    for label, view, median, p99, size, samples in rows:
        print(f"| {label} | {view['median_ms']:.1f} ms / {view['max_ms']:.1f} ms | {view['scrapes']:.0f} | "
              f"{samples} | {median:.1f} ms / {p99:.1f} ms | {size / 1024:.0f} KiB |")


def _methods():  # type: ignore[no-untyped-def]
    from tuneserve_client.proto.tuneserve.v1 import datasets_pb2, models_pb2, prediction_pb2, training_pb2

    for module in (datasets_pb2, training_pb2, models_pb2, prediction_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield service.full_name, method


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=15, help="Prometheus window per phase (scrapes every 1 s)")
    args = parser.parse_args()
    asyncio.run(main(args.models, args.seconds))
