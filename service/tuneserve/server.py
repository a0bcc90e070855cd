"""The tuneserve server: wiring, `create_server()` and the `tuneserve serve` entry point.

    gRPC servicers -> core (datasets, jobs, registry, evaluation, inference) -> engines -> store
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from pydantic import ValidationError
from pydantic_settings import SettingsError

from tuneserve.core.data.datasets import DatasetManager
from tuneserve.core.evaluation.evaluator import Evaluator
from tuneserve.core.recommend.recommender import Recommender
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.serving.cache import ModelCache
from tuneserve.core.serving.inference import InferenceService
from tuneserve.core.serving.resolver import VersionResolver
from tuneserve.core.training.jobs import JobManager
from tuneserve.core.training.runners.factory import build_runner
from tuneserve.cpus import available_cpus
from tuneserve.engines.runtime import Runtime, RuntimeOptions, open_runtime
from tuneserve.errors import ConfigError, TuneServeError
from tuneserve.grpc import auth, tls
from tuneserve.grpc.interceptors import StatusInterceptor
from tuneserve.grpc.open_inference import servicer as open_inference_servicer
from tuneserve.grpc.v1.servicers import DatasetServicer, ModelServicer, PredictionServicer, TrainingServicer
from tuneserve.grpc.v1.validation import RequestValidationInterceptor
from tuneserve.metrics import Metrics
from tuneserve.settings import Settings
from tuneserve.store import ArtifactStore, MetadataStore, open_metadata_store
from tuneserve.store.sweep import sweep_orphans
from tuneserve.store.watch import DatabaseWatch
from tuneserve_client.proto.inference import grpc_service_pb2_grpc
from tuneserve_client.proto.tuneserve.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

log = logging.getLogger("tuneserve")

RuntimeOpener = Callable[..., Runtime]
"""`opener(version_dir, variant, *, options: RuntimeOptions)` -> a warmed-up runtime (engines.runtime.open_runtime)."""

SERVICE_NAMES = [
    datasets_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
    training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    prediction_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name,
    open_inference_servicer.SERVICE_NAME,
]
# NOTE: Predict and the Open Inference Protocol keep answering for loaded models while the database is down.
NEEDS_DATABASE = [
    name for name in SERVICE_NAMES
    if name not in (prediction_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name, open_inference_servicer.SERVICE_NAME)
]


@dataclass
class App:
    """A started server and everything it owns; `stop()` shuts it down in order."""

    server: grpc.aio.Server
    port: int
    metrics_port: int
    settings: Settings
    health: health.aio.HealthServicer  # type: ignore[name-defined]  # grpc-stubs predates grpc_health's aio
    store: MetadataStore
    jobs: JobManager
    cache: ModelCache
    metrics: Metrics
    database_watch: DatabaseWatch | None = None

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.server.grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        if self.database_watch is not None:
            await self.database_watch.stop()
        # NOTE: together: running jobs checkpoint (training.cancel_grace_seconds) while in-flight RPCs finish
        await asyncio.gather(self.server.stop(grace), self.jobs.stop())
        await self.cache.close()
        await self.store.close()


async def create_server(settings: Settings, *, runtime_opener: RuntimeOpener = open_runtime) -> App:
    """Open the store, wire the services and start serving; the port in `App.port` is the one bound (port 0 works).
    Raises ConfigError for unusable security or runner settings, before anything is opened or bound.
    `runtime_opener(version_dir, variant, options=...)` opens a version's runtime (tests wrap it to hold a load)."""
    credentials = tls.server_credentials(settings.security)
    tokens = auth.load_tokens(settings.security)
    runner = build_runner(settings)
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(settings.server.rpc_workers, thread_name_prefix="tuneserve")
    )
    data_dir = settings.storage.data_dir
    try:
        artifacts = ArtifactStore(data_dir)
        artifacts.clean_temp()
    except OSError as exc:
        raise ConfigError(f"storage.data_dir (TUNESERVE_STORAGE__DATA_DIR, --data-dir) {data_dir}: "
                          f"{exc.strerror or exc} ({exc.filename})") from None
    store = await open_metadata_store(settings.storage)
    await _sweep(store, artifacts, settings)
    metrics = Metrics()

    datasets = DatasetManager(store, artifacts, settings.limits)
    registry = ModelRegistry(store, artifacts)
    jobs = JobManager(settings, store, artifacts, datasets, registry, runner, metrics)
    options = RuntimeOptions(
        intra_op_threads=settings.inference.intra_op_threads or available_cpus(),
        intra_op_spinning=settings.inference.intra_op_spinning,
        providers=tuple(settings.inference.providers),
        max_image_pixels=settings.limits.max_image_pixels,
        max_chars_per_token=settings.limits.max_chars_per_token,
    )
    cache = ModelCache(functools.partial(runtime_opener, options=options), settings.inference, settings.batching, metrics)
    resolver = VersionResolver(registry, cache)
    # NOTE: every catalog -> serving event is wired here, and only here; serving never writes back but through the
    # resolver's corruption record
    registry.on_change(resolver.refresh)
    registry.on_delete(resolver.forget)
    registry.on_delete(cache.unload_model)
    inference = InferenceService(registry, cache, resolver, settings.limits, settings.batching, metrics)
    evaluator = Evaluator(datasets, inference)

    limit = settings.server.max_message_bytes
    server = grpc.aio.server(
        # NOTE: the first interceptor is the outermost: refuse unauthenticated calls before anything else runs
        interceptors=[
            *auth.interceptors(tokens, metrics), StatusInterceptor(metrics),
            RequestValidationInterceptor(settings.limits.max_name_chars),
        ],
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
        maximum_concurrent_rpcs=settings.server.max_concurrent_rpcs or None,
    )
    datasets_pb2_grpc.add_DatasetServiceServicer_to_server(DatasetServicer(datasets), server)
    recommender = Recommender(settings, datasets, artifacts)
    training_pb2_grpc.add_TrainingServiceServicer_to_server(TrainingServicer(jobs, recommender), server)
    models_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry, inference, evaluator), server)
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(inference), server)
    open_inference = open_inference_servicer.InferenceServicer(
        registry, inference, settings.limits, settings.batching.max_queue_size
    )
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(open_inference, server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc-stubs predates health.aio
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)

    address = f"{settings.server.host}:{settings.server.port}"
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # NOTE: grpc's "Failed to bind to address"
        port = 0
    if port == 0:
        raise ConfigError(f"server.port (TUNESERVE_SERVER__PORT, --port): cannot bind {address}: the port is in use, "
                          "or the host is not an address of this machine")
    metrics_port = _start_metrics(settings, metrics)
    await jobs.start()
    await server.start()
    for name in ["", *SERVICE_NAMES]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    watch = DatabaseWatch(store, functools.partial(_database_health, health_servicer))
    watch.start()
    log.info(
        "serving on %s:%d (%s; metrics on %s:%d), data in %s, metadata in %s", settings.server.host, port,
        tls.describe(settings.security), settings.server.metrics_host, metrics_port, data_dir, store.describe(),
    )
    return App(server, port, metrics_port, settings, health_servicer, store, jobs, cache, metrics, watch)


async def _sweep(store: MetadataStore, artifacts: ArtifactStore, settings: Settings) -> None:
    """Remove what crashes left between a publish and its record (store.sweep); a server sharing its database waits
    storage.orphan_grace_seconds before it takes a directory for an orphan."""
    grace = settings.storage.orphan_grace_seconds if store.shared else 0.0
    try:
        await sweep_orphans(store, artifacts, min_age_seconds=grace)
    except (OSError, TuneServeError) as exc:  # NOTE: a sweep that fails costs disk space, not service
        log.warning("orphan sweep skipped: %s", exc)


async def _database_health(
    servicer: health.aio.HealthServicer,  # type: ignore[name-defined]  # grpc-stubs predates grpc_health's aio
    available: bool, reason: str,
) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if available else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *NEEDS_DATABASE]:
        await servicer.set(name, status)


def _start_metrics(settings: Settings, metrics: Metrics) -> int:
    if settings.server.metrics_port < 0:
        return -1
    try:
        httpd, _ = start_http_server(
            settings.server.metrics_port, settings.server.metrics_host, registry=metrics.registry
        )
    except OSError as exc:
        raise ConfigError(
            f"server.metrics_port (TUNESERVE_SERVER__METRICS_PORT, --metrics-port): cannot bind "
            f"{settings.server.metrics_host}:{settings.server.metrics_port}: {exc.strerror or exc}"
        ) from None
    return int(httpd.server_port)


async def serve(settings: Settings) -> None:
    app = await create_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down (grace %.0fs)", settings.server.grace_seconds)
    await app.stop()


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="tuneserve serve", description="Run the tuneserve gRPC server. Flags override TUNESERVE_* variables."
    )
    parser.add_argument("--host", help="interface to bind (TUNESERVE_SERVER__HOST, default [::])")
    parser.add_argument("--port", type=int, help="gRPC port (TUNESERVE_SERVER__PORT, default 50051)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port, -1 disables (default 9090)")
    parser.add_argument("--data-dir", type=Path, help="metadata and artifacts (TUNESERVE_STORAGE__DATA_DIR)")
    parser.add_argument("--max-message-bytes", type=int, help="gRPC message limit, both directions (default 64 MiB)")
    parser.add_argument("--max-concurrent-jobs", type=int, help="fine-tunes running at once (default 1)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where training runs (default auto)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING... (default INFO)")
    args = parser.parse_args(argv)
    settings = Settings()
    overrides = {
        ("server", "host"): args.host, ("server", "port"): args.port, ("server", "metrics_port"): args.metrics_port,
        ("server", "max_message_bytes"): args.max_message_bytes, ("storage", "data_dir"): args.data_dir,
        ("training", "max_concurrent_jobs"): args.max_concurrent_jobs, ("training", "device"): args.device,
    }
    for (section, name), value in overrides.items():
        if value is not None:
            setattr(getattr(settings, section), name, value)
    if args.log_level:
        settings.log_level = args.log_level
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the server; an unusable configuration is one line on stderr and exit status 2, not a traceback."""
    try:
        settings = parse_args(argv)
    except (ValidationError, SettingsError) as exc:
        print(f"error: invalid settings: {_settings_problem(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _settings_problem(exc: ValidationError | SettingsError) -> str:
    if isinstance(exc, SettingsError):
        return str(exc)
    # NOTE: only section.field of each location: deeper parts are dict keys, e.g. a bearer token
    return "; ".join(f"TUNESERVE_{'__'.join(map(str, e['loc'][:2])).upper()}: {e['msg']}" for e in exc.errors())
