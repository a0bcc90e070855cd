"""InferenceService over a real registry (SQLite store on disk) and numpy runtimes: `latest` and user aliases, the
hot swap (a new version serves only once loaded; the old one is unloaded after), variants and lifecycle, and no work
for a caller who is gone (cancelled, past its deadline, or refused by a full queue)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.core.fakes import NumpyRuntime, Words
from tests.core.serving.conftest import World, until
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.serving.inference import PredictParams, StreamRequest
from tuneserve.core.serving.resolver import VersionRef
from tuneserve.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from tuneserve.store import SQLiteMetadataStore
from tuneserve.types import ModelRecord


async def test_latest_switches_only_after_the_new_version_is_loaded(world: World, model: ModelRecord) -> None:
    assert await world.predict(model) == (1, "fp32")
    release = world.loader.hold(2)
    await world.new_version(model)  # READY: loading starts in the background
    for _ in range(3):
        assert await asyncio.wait_for(world.predict(model), 1) == (1, "fp32")  # served, never waiting for v2
    release.set()
    await until(lambda: world.cache.is_loaded(model.id, 2))
    assert await world.predict(model) == (2, "fp32")
    await until(lambda: world.loader.runtimes[1, "fp32"].closed)  # the old version is unloaded after the swap
    assert world.loader.loads == [(1, "fp32"), (2, "fp32")]
    assert await world.predict(model, version=1) == (1, "fp32")  # an explicit version still works (reloaded)


async def test_user_aliases_move_atomically_and_survive_a_reopen(
    world: World, model: ModelRecord, tmp_path: Path
) -> None:
    await world.new_version(model)
    updated = await world.registry.set_alias(model.id, "production", 1)
    assert updated.aliases == {"production": 1}
    assert await world.predict(model, alias="production") == (1, "fp32")
    assert await world.predict(model, alias="latest") == (2, "fp32")
    assert (await world.registry.set_alias(model.id, "production", 2)).aliases == {"production": 2}
    assert await world.predict(model, alias="production", version=1) == (2, "fp32")  # the alias wins
    reopened = SQLiteMetadataStore(tmp_path / "tuneserve.db")
    await reopened.open()
    assert (await ModelRegistry(reopened, world.artifacts).get(model.id)).aliases == {"production": 2}
    await reopened.close()
    assert (await world.registry.set_alias(model.id, "production", 0)).aliases == {}


@pytest.mark.parametrize(
    ("alias", "version", "error", "message"),
    [
        ("latest", 1, InvalidArgument, "'latest' is implicit"),
        ("Prod", 1, InvalidArgument, "use a lowercase letter"),
        ("", 1, InvalidArgument, "is not valid"),
        ("prod", 9, NotFound, "model version '.*/9' not found"),
        ("prod", 0, NotFound, r"alias '.*/prod' not found \(aliases of this model: none, and latest\)"),
        ("prod", -1, InvalidArgument, "version must be >= 1"),
    ],
)
async def test_bad_aliases(
    world: World, model: ModelRecord, alias: str, version: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await world.registry.set_alias(model.id, alias, version)


async def test_an_alias_points_only_at_a_ready_version(world: World, model: ModelRecord) -> None:
    training = await world.registry.add_version(await world.registry.get(model.id), "job-2")
    with pytest.raises(FailedPrecondition, match="version 2 is TRAINING; an alias can point only at a READY"):
        await world.registry.set_alias(model.id, "canary", training.version)
    with pytest.raises(NotFound, match="aliases of this model: none"):
        await world.predict(model, alias="canary")


async def test_variants_are_served_only_when_they_passed_their_guard(world: World, model: ModelRecord) -> None:
    with pytest.raises(FailedPrecondition, match="has no int8 variant: it was exported without one"):
        await world.predict(model, variant="int8")
    with pytest.raises(InvalidArgument, match="variant 'fp16' is not one of: fp32, int8"):
        await world.predict(model, variant="fp16")
    version_dir = world.artifacts.version_dir(model.id, 2)
    await world.new_version(model)
    (version_dir / "model.int8.onnx").write_bytes(b"int8 graph")
    report = {"fp32": {"macro_f1": 0.91, "served": True},
              "int8": {"macro_f1": 0.85, "served": False, "reason": "macro F1 dropped 6.0 points > 1.0"}}
    (version_dir / "variants.json").write_text(json.dumps(report))
    with pytest.raises(FailedPrecondition, match=r"the int8 variant is not served \(macro F1 dropped 6.0 points"):
        await world.predict(model, version=2, variant="int8")
    version = await world.new_version(model)
    version_dir = world.artifacts.version_dir(model.id, version)
    (version_dir / "model.int8.onnx").write_bytes(b"int8 graph")
    report["int8"] = {"macro_f1": 0.905, "served": True}
    (version_dir / "variants.json").write_text(json.dumps(report))
    assert await world.predict(model, variant="int8") == (3, "int8")
    serving = world.inference.serving(await world.registry.get(model.id))
    assert serving[3].loaded == {"int8": "CPUExecutionProvider"}
    assert {n: v.served for n, v in serving[3].variants.items()} == {"fp32": True, "int8": True}
    assert serving[3].variants["int8"].macro_f1 == 0.905


async def test_load_and_unload(world: World, model: ModelRecord) -> None:
    await world.inference.load_model(model.id)
    assert world.loader.loads == [(1, "fp32")]
    assert world.inference.serving(await world.registry.get(model.id))[1].loaded == {"fp32": "CPUExecutionProvider"}
    await world.inference.unload_model(model.id)
    assert world.inference.serving(await world.registry.get(model.id))[1].loaded == {}
    with pytest.raises(NotFound, match="model version '.*/7' not found"):
        await world.inference.unload_model(model.id, 7)
    with pytest.raises(FailedPrecondition, match="has no int8 variant"):
        await world.inference.load_model(model.id, 1, "int8")


async def test_predict_stream_answers_every_request_and_errors_do_not_end_it(world: World, model: ModelRecord) -> None:
    async def requests() -> AsyncIterator[StreamRequest]:
        for i in range(20):
            texts = [] if i == 7 else [f"text {i}"]
            yield StreamRequest(f"r{i}", PredictParams(model.id, texts))

    answers = {rid: outcome async for rid, outcome in world.inference.predict_stream(requests())}
    assert sorted(answers) == sorted(f"r{i}" for i in range(20))
    assert isinstance(answers.pop("r7"), InvalidArgument)
    assert all(result.version == 1 for result in answers.values())  # type: ignore[union-attr]


class SlowEncoding:
    """Wraps a runtime's `encode`: each call takes `seconds` (on its thread) and is counted."""

    def __init__(self, runtime: NumpyRuntime, seconds: float) -> None:
        self.calls = 0
        self.started = threading.Event()
        self._encode, self._seconds = runtime.encode, seconds
        runtime.encode = self  # type: ignore[method-assign]

    def __call__(self, texts: Sequence[str]) -> list[Words]:
        self.calls += 1
        self.started.set()
        time.sleep(self._seconds)
        return self._encode(texts)


LONG = ["word " * 20_000] * 256   # 256 texts of 100,000 characters: 8 pieces of 32 texts cut to 2048 characters


async def _loaded(world: World, model: ModelRecord) -> NumpyRuntime:
    await world.predict(model)
    return world.loader.runtimes[1, "fp32"]


async def test_a_cancelled_predict_stops_encoding_after_the_piece_at_hand(world: World, model: ModelRecord) -> None:
    runtime = await _loaded(world, model)
    slow = SlowEncoding(runtime, 0.1)
    batches = len(runtime.batches)
    call = asyncio.ensure_future(world.inference.predict(PredictParams(model.id, LONG)))
    assert await asyncio.to_thread(slow.started.wait, 5)
    call.cancel()   # what gRPC does to the handler when its caller cancels or its deadline passes
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.3)
    assert slow.calls == 1 and len(runtime.batches) == batches


async def test_a_deadline_that_passes_while_encoding_stops_it(world: World, model: ModelRecord) -> None:
    runtime = await _loaded(world, model)
    slow = SlowEncoding(runtime, 0.1)
    with pytest.raises(DeadlineExceeded, match="while the request's inputs were being encoded"):
        await world.inference.predict(PredictParams(model.id, LONG), time_remaining=0.15)
    assert 1 <= slow.calls <= 3   # of 8 pieces
    slow.calls = 0
    result = await world.inference.scores(await world.inference.resolve(VersionRef(model.id)), LONG[:40])
    assert result.shape == (40, 3) and slow.calls == 2   # 40 texts: two pieces (32 + 8)


async def test_a_full_queue_or_a_passed_deadline_is_refused_before_encoding(world: World, model: ModelRecord) -> None:
    runtime = await _loaded(world, model)
    runtime.hold()
    first = asyncio.ensure_future(world.predict(model))
    assert await asyncio.to_thread(runtime.running.wait, 5)
    queued = [asyncio.ensure_future(world.inference.predict(PredictParams(model.id, ["w"] * 256))) for _ in range(4)]
    await until(lambda: world.cache.loaded(model.id)[0].batcher.queued == 1024)
    slow = SlowEncoding(runtime, 0.0)
    with pytest.raises(ResourceExhausted, match="batching.max_queue_size = 1024"):
        await world.inference.predict(PredictParams(model.id, LONG[:1]))
    with pytest.raises(DeadlineExceeded):
        await world.inference.predict(PredictParams(model.id, LONG[:1]), time_remaining=0.0)
    assert slow.calls == 0
    runtime.release()
    await asyncio.gather(first, *queued)
