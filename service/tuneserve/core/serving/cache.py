"""Loaded models: one ONNX Runtime session and its `Batcher` per model version and variant, loaded on first use (or
by LoadModel) and unloaded explicitly or least-recently-used first beyond `max_loaded_models` / `max_loaded_bytes`.

Loading follows MLServer's order: a version is registered as loading, loaded (and warmed up) off the event loop, and
only then served; a failed load leaves nothing behind. Concurrent first requests for one version share a single load.
Requests hold a lease while they use a model: an unloaded (retired) model stops taking new requests at once, but its
session is closed only when the last lease is released, so nothing is closed under a running request.

Before a version is loaded, the files it serves are checked against the sha256 manifest written when it was published
(`store.checksums`): a corrupt version is never served; the load raises `CorruptVersion` (FAILED_PRECONDITION naming
the file), and the caller (`resolver.VersionResolver`) marks the version FAILED, so "latest" falls back to an intact
version. The cache itself never writes to the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from tuneserve.core.registry import ServableVersion
from tuneserve.core.serving.batching import Batcher
from tuneserve.engines.runtime import VARIANT_FILES, Runtime
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.errors import FailedPrecondition
from tuneserve.metrics import Metrics, process_rss_bytes
from tuneserve.settings import BatchingSettings, InferenceSettings
from tuneserve.store.checksums import ChecksumMismatch, verify

log = logging.getLogger(__name__)

Loader = Callable[[Path, str], Runtime]
"""`loader(version_dir, variant)` -> a warmed-up runtime (blocking; run off the event loop)."""


class CorruptVersion(FailedPrecondition):
    """A version's served files failed their checksum check: it is not served."""

    def __init__(self, model_id: str, version: int, problem: str) -> None:
        super().__init__(
            f"model {model_id!r} version {version} failed its checksum check and is not served: {problem}; "
            "the version is marked FAILED: train it again or use another version"
        )
        self.model_id, self.version, self.problem = model_id, version, problem


@dataclass(frozen=True)
class ModelKey:
    model_id: str
    version: int
    variant: str = "fp32"

    def __str__(self) -> str:
        return f"{self.model_id}/{self.version}/{self.variant}"


class LoadedModel:
    def __init__(self, key: ModelKey, batcher: Batcher) -> None:
        self.key = key
        self.batcher = batcher
        self.leases = 0
        self.retired = False

    @property
    def runtime(self) -> Runtime:
        return self.batcher.runtime


class ModelCache:
    def __init__(
        self, loader: Loader, inference: InferenceSettings, batching: BatchingSettings, metrics: Metrics | None = None
    ) -> None:
        self._loader = loader
        self._max_loaded = max(1, inference.max_loaded_models)
        self._max_bytes = max(0, inference.max_loaded_bytes)
        self._batching = batching
        self._metrics = metrics
        self._entries: OrderedDict[ModelKey, LoadedModel] = OrderedDict()   # least recently used first
        self._loading: dict[ModelKey, asyncio.Future[LoadedModel]] = {}
        self._waiters: dict[ModelKey, int] = {}       # leases to hand out when a load finishes
        self._closing: set[asyncio.Task[None]] = set()
        self._draining: set[LoadedModel] = set()      # retired, still leased by running requests

    async def load(self, servable: ServableVersion, variant: str = "fp32") -> LoadedModel:
        """Load (or find) and mark as most recently used, without taking a lease."""
        key = _key(servable, variant)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        return await asyncio.shield(self._start_load(key, servable.path))

    @contextlib.asynccontextmanager
    async def lease(self, servable: ServableVersion, variant: str = "fp32") -> AsyncIterator[LoadedModel]:
        """Use a model (loading it if needed); it stays open until the block ends, even if unloaded meanwhile."""
        entry = await self._acquire(_key(servable, variant), servable.path)
        try:
            yield entry
        finally:
            self._release(entry)

    def is_loaded(self, model_id: str, version: int, variant: str = "fp32") -> bool:
        return ModelKey(model_id, version, variant) in self._entries

    def loaded(self, model_id: str) -> list[LoadedModel]:
        return [entry for key, entry in self._entries.items() if key.model_id == model_id]

    def unload(self, model_id: str, version: int = 0, reason: str = "unloaded") -> int:
        """Retire the model's loaded variants of `version` (0: of every version); returns how many."""
        keys = [k for k in self._entries if k.model_id == model_id and version in (0, k.version)]
        for key in keys:
            self.retire(key, reason)
        return len(keys)

    async def unload_model(self, model_id: str) -> None:
        self.unload(model_id, 0, "model deleted")

    def retire(self, key: ModelKey, reason: str) -> None:
        """Stop serving `key`; its session closes once the requests using it are done."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        log.info("unloading %s (%s)", key, reason)
        entry.retired = True
        self._forget_metrics(entry)
        if entry.leases == 0:
            self._close_later(entry)
        else:
            self._draining.add(entry)

    async def close(self) -> None:
        """Close everything (server shutdown: no RPC runs any more)."""
        await asyncio.gather(*self._loading.values(), return_exceptions=True)  # a load in flight lands first
        for key in list(self._entries):
            self.retire(key, "server stopping")
        # NOTE: models still leased at shutdown are closed anyway: the server has already stopped its RPCs
        for entry in list(self._draining):
            self._close_later(entry)
        await asyncio.gather(*self._closing, return_exceptions=True)

    # -- loading --------------------------------------------------------------------------------------------------

    async def _acquire(self, key: ModelKey, path: Path) -> LoadedModel:
        entry = self._entries.get(key)
        if entry is not None:
            entry.leases += 1
            self._entries.move_to_end(key)
            return entry
        future = self._start_load(key, path)
        # NOTE: the lease is taken by the load itself, in the same step that publishes the model, so an eviction
        # right after cannot close it before this waiter resumes.
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release(future.result())
            elif key in self._waiters:
                self._waiters[key] -= 1
            raise

    def _start_load(self, key: ModelKey, path: Path) -> asyncio.Future[LoadedModel]:
        if key not in self._loading:
            self._loading[key] = asyncio.ensure_future(self._load(key, path))
        return self._loading[key]

    async def _load(self, key: ModelKey, path: Path) -> LoadedModel:
        started, rss_before = time.perf_counter(), process_rss_bytes()
        try:
            runtime = await asyncio.to_thread(self._verified_load, path, key.variant)
        except ChecksumMismatch as exc:
            self._observe_load("error", started)
            self._waiters.pop(key, None)
            raise self._corrupt(key, exc) from exc
        except Exception as exc:
            log.exception("loading %s failed", key)
            self._observe_load("error", started)
            self._waiters.pop(key, None)
            raise FailedPrecondition(
                f"model {key.model_id!r} version {key.version} ({key.variant}) could not be loaded: {exc}"
            ) from exc
        finally:
            self._loading.pop(key, None)
        self._observe_load("ok", started)
        entry = LoadedModel(key, Batcher(runtime, self._batching, name=str(key), observer=self._observer(key, runtime)))
        entry.leases = self._waiters.pop(key, 0)
        self._entries[key] = entry
        self._record_loaded(entry, rss_before)
        self._evict(keep=key)
        return entry

    def _verified_load(self, path: Path, variant: str) -> Runtime:
        served = {VARIANT_FILES.get(variant, ""), ARTIFACTS["labels"], ARTIFACTS["preprocessing"]}
        verify(path, lambda relative: relative in served or relative.startswith(ARTIFACTS["tokenizer"] + "/"))
        return self._loader(path, variant)

    def _corrupt(self, key: ModelKey, exc: ChecksumMismatch) -> CorruptVersion:
        problem = f"{exc.relative} {exc.problem}"
        log.error("model %s is corrupt and will not be served: %s (in %s)", key, problem, exc.directory)
        if self._metrics is not None:
            self._metrics.artifact_checksum_failures.inc()
        return CorruptVersion(key.model_id, key.version, problem)

    def _evict(self, keep: ModelKey) -> None:
        while len(self._entries) > self._max_loaded or (self._max_bytes and self._bytes() > self._max_bytes):
            victim = next((k for k in self._entries if k != keep), None)
            if victim is None:
                log.warning("%s alone (%d bytes) exceeds max_loaded_bytes = %d; serving it anyway",
                            keep, self._bytes(), self._max_bytes)
                return
            self.retire(victim, "least recently used")
            if self._metrics is not None:
                self._metrics.model_evictions.inc()

    def _bytes(self) -> int:
        return sum(entry.runtime.memory_bytes for entry in self._entries.values())

    def _release(self, entry: LoadedModel) -> None:
        entry.leases -= 1
        if entry.retired and entry.leases == 0:
            self._close_later(entry)

    def _close_later(self, entry: LoadedModel) -> None:
        self._draining.discard(entry)
        task = asyncio.ensure_future(entry.batcher.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- metrics (tuneserve_models_loaded, tuneserve_model_*, tuneserve_inference_*) --------------------------------

    def _labels(self, key: ModelKey, runtime: Runtime) -> tuple[str, str, str]:
        version = str(key.version) if key.variant == "fp32" else f"{key.version}-{key.variant}"
        return key.model_id, version, runtime.provider

    def _observer(self, key: ModelKey, runtime: Runtime) -> _BatchMetrics | None:
        return None if self._metrics is None else _BatchMetrics(self._metrics, self._labels(key, runtime))

    def _forget_metrics(self, entry: LoadedModel) -> None:
        if self._metrics is not None:
            # NOTE: inference histograms go too, so series stay bounded by the cache size
            self._metrics.forget_model_version(*self._labels(entry.key, entry.runtime))
            self._metrics.models_loaded.set(len(self._entries))

    def _observe_load(self, outcome: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.model_load_seconds.labels(outcome).observe(time.perf_counter() - started)

    def _record_loaded(self, entry: LoadedModel, rss_before: int | None) -> None:
        if self._metrics is None:
            return
        labels = self._labels(entry.key, entry.runtime)
        self._metrics.model_size_bytes.labels(*labels).set(entry.runtime.memory_bytes)
        rss_after = process_rss_bytes()
        if rss_before is not None and rss_after is not None:
            self._metrics.model_load_rss_bytes.labels(*labels).set(max(0, rss_after - rss_before))
        self._metrics.models_loaded.set(len(self._entries))


class _BatchMetrics:
    """The batcher's observer: tuneserve_inference_queue_seconds, _batch_size and _compute_seconds of one model."""

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str]) -> None:
        self._queue = metrics.inference_queue_seconds.labels(*labels)
        self._size = metrics.inference_batch_size.labels(*labels)
        self._compute = metrics.inference_compute_seconds.labels(*labels)

    def queued(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def ran(self, size: int, seconds: float) -> None:
        self._size.observe(size)
        self._compute.observe(seconds)


def _key(servable: ServableVersion, variant: str) -> ModelKey:
    return ModelKey(servable.model.id, servable.version.version, variant)
