"""VersionResolver: a reference (version number | alias | latest, + variant) becomes the version that serves it; the
variant is checked there; a corrupt version is recorded in the registry by the resolver (the cache only raises), so
`latest` falls back to an intact version."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.core.serving.conftest import World
from tuneserve.core.serving.cache import CorruptVersion
from tuneserve.core.serving.resolver import VersionRef
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound
from tuneserve.store.checksums import write_manifest
from tuneserve.types import ModelRecord, VersionState


async def test_latest_an_alias_and_an_explicit_version(world: World, model: ModelRecord) -> None:
    await world.new_version(model)
    await world.registry.set_alias(model.id, "production", 1)
    assert (await world.resolver.resolve(VersionRef(model.id))).version == 2
    assert (await world.resolver.resolve(VersionRef(model.id, alias="production"))).version == 1
    assert (await world.resolver.resolve(VersionRef(model.id, version=2, alias="production"))).version == 1
    target = await world.resolver.resolve(VersionRef(model.id, version=1))
    assert (target.model.id, target.version, target.variant) == (model.id, 1, "fp32")


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        (VersionRef(""), InvalidArgument, "model_id is required"),
        (VersionRef("m", version=-1), InvalidArgument, "version must be >= 0"),
        (VersionRef("model-x"), NotFound, "model 'model-x' not found"),
    ],
)
async def test_bad_references(world: World, ref: VersionRef, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        await world.resolver.resolve(ref)


async def test_the_variant_is_checked_for_every_kind_of_reference(world: World, model: ModelRecord) -> None:
    for ref in [VersionRef(model.id, variant="fp16"), VersionRef(model.id, 1, variant="fp16")]:
        with pytest.raises(InvalidArgument, match="variant 'fp16' is not one of"):
            await world.resolver.resolve(ref)
    for ref in [VersionRef(model.id, variant="int8"), VersionRef(model.id, 1, variant="int8")]:
        with pytest.raises(FailedPrecondition, match="has no int8 variant"):
            await world.resolver.resolve(ref)
    version_dir = world.artifacts.version_dir(model.id, 1)
    (version_dir / "variants.json").write_text(json.dumps({"int8": {"served": True, "macro_f1": 0.9}}))
    (version_dir / "model.int8.onnx").write_bytes(b"graph")
    assert (await world.resolver.resolve(VersionRef(model.id, variant="int8"))).variant == "int8"


async def test_named_ignores_the_hot_swap(world: World, model: ModelRecord) -> None:
    assert await world.predict(model) == (1, "fp32")
    release = world.loader.hold(2)
    await world.new_version(model)
    try:
        assert (await world.resolver.resolve(VersionRef(model.id))).version == 1   # requests: the warm one
        assert (await world.resolver.named(VersionRef(model.id))).version == 2     # LoadModel: what latest names
    finally:
        release.set()


async def test_a_corrupt_version_is_marked_failed_and_latest_falls_back(world: World, model: ModelRecord) -> None:
    await world.new_version(model)
    version_dir = world.artifacts.version_dir(model.id, 2)
    (version_dir / "model.onnx").write_bytes(b"graph")
    write_manifest(version_dir)
    (version_dir / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(CorruptVersion, match="version 2 failed its checksum check") as raised:
        await world.predict(model)
    assert raised.value.problem.startswith("model.onnx")
    versions = {v.version: v.state for v in (await world.registry.get(model.id)).versions}
    assert versions == {1: VersionState.READY, 2: VersionState.FAILED}
    assert await world.predict(model) == (1, "fp32")


async def test_a_corrupt_version_found_while_preparing_a_swap_is_marked_too(world: World, model: ModelRecord) -> None:
    assert await world.predict(model) == (1, "fp32")
    version = await world.registry.add_version(await world.registry.get(model.id), "job")
    version_dir = world.artifacts.version_dir(model.id, version.version)
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(b"graph")
    write_manifest(version_dir)
    (version_dir / "model.onnx").write_bytes(b"tampered")
    await world.registry.mark_ready(model.id, version.version, {"macro_f1": 0.9})  # the background load finds it
    for _ in range(500):
        if (await world.registry.get(model.id)).versions[-1].state is VersionState.FAILED:
            break
        await asyncio.sleep(0.01)
    assert (await world.registry.get(model.id)).versions[-1].state is VersionState.FAILED
    assert await asyncio.wait_for(world.predict(model), 1) == (1, "fp32")
