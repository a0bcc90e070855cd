"""InferenceService over a real registry (SQLite store on disk) and numpy runtimes: `latest` and user aliases, the
hot swap (a new version serves only once loaded; the old one is unloaded after), variants and lifecycle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.core.serving.conftest import World, until
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.serving.inference import PredictParams, StreamRequest
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound
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
