"""ModelRegistry on the real SQLite store: numbered versions, READY/FAILED, "latest", aliases, corrupt versions,
the servable lookups, change listeners, the cached snapshot, deletion and variants."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tuneserve.core.registry import ModelRegistry
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound
from tuneserve.store import ArtifactStore
from tuneserve.store.sqlite import SQLiteMetadataStore
from tuneserve.types import ModelRecord, VersionState

LABELS = ["biz", "sport"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
    s = SQLiteMetadataStore(tmp_path / "tuneserve.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "data")


@pytest.fixture
def registry(store: SQLiteMetadataStore, artifacts: ArtifactStore) -> ModelRegistry:
    return ModelRegistry(store, artifacts)


async def model_with(registry: ModelRegistry, *states: VersionState) -> ModelRecord:
    """A model whose versions 1, 2, ... end in these states (TRAINING ones stay as added)."""
    model = await registry.create("topics", "tiny-bert", LABELS, "text", source_job_id="job-1")
    for state in states:
        version = await registry.add_version(model, f"job-{len(model.versions) + 1}")
        model.versions.append(version)
        if state is VersionState.READY:
            await registry.mark_ready(model.id, version.version, {"macro_f1": 0.5 + version.version / 10})
        elif state is VersionState.FAILED:
            await registry.mark_failed(model.id, version.version)
    return await registry.get(model.id)


async def test_versions_are_numbered_and_carry_their_state_and_metrics(
    registry: ModelRegistry, artifacts: ArtifactStore
) -> None:
    model = await registry.create("topics", "tiny-bert", LABELS, "text", kind="scratch", source_job_id="job-1")
    assert (model.kind, model.source_job_id, model.labels, model.versions) == ("scratch", "job-1", LABELS, [])
    first = await registry.add_version(model, "job-1")
    # NOTE: numbered by the database, not from the (stale) record passed in
    second = await registry.add_version(model, "job-2")
    assert (first.version, second.version) == (1, 2) and first.state is VersionState.TRAINING
    (artifacts.version_dir(model.id, 1)).mkdir(parents=True)
    (artifacts.version_dir(model.id, 1) / "model.onnx").write_bytes(b"x" * 123)
    await registry.mark_ready(model.id, 1, {"macro_f1": 0.8})
    await registry.mark_failed(model.id, 2)
    versions = (await registry.get(model.id)).versions
    assert [(v.version, v.state, v.job_id) for v in versions] == [
        (1, VersionState.READY, "job-1"), (2, VersionState.FAILED, "job-2")
    ]
    assert versions[0].validation_metrics == {"macro_f1": 0.8} and versions[0].onnx_size_bytes == 123
    assert [m.id for m in await registry.from_job("job-1")] == [model.id]
    with pytest.raises(NotFound):
        await registry.mark_ready(model.id, 3, {})
    with pytest.raises(NotFound):
        await registry.get("model-missing")


async def test_latest_is_the_newest_ready_version(registry: ModelRegistry, artifacts: ArtifactStore) -> None:
    model = await model_with(registry, VersionState.READY, VersionState.READY, VersionState.FAILED,
                             VersionState.TRAINING)
    servable = await registry.servable(model.id)
    assert servable.version.version == 2 and servable.model.id == model.id
    assert servable.path == artifacts.version_dir(model.id, 2)
    assert (await registry.servable(model.id, alias="latest")).version.version == 2
    assert (await registry.servable(model.id, 1)).version.version == 1
    with pytest.raises(FailedPrecondition, match="version 3 is FAILED, not READY"):
        await registry.servable(model.id, 3)
    with pytest.raises(FailedPrecondition, match="version 4 is TRAINING, not READY"):
        await registry.servable(model.id, 4)
    with pytest.raises(NotFound):
        await registry.servable(model.id, 5)

    fresh = await model_with(registry, VersionState.TRAINING, VersionState.FAILED)
    with pytest.raises(FailedPrecondition, match=r"has no READY version yet \(v1 TRAINING, v2 FAILED\)"):
        await registry.servable(fresh.id)


async def test_aliases_point_at_ready_versions(registry: ModelRegistry) -> None:
    model = await model_with(registry, VersionState.READY, VersionState.READY, VersionState.TRAINING)
    updated = await registry.set_alias(model.id, "production", 1)
    assert updated.aliases == {"production": 1}
    assert (await registry.servable(model.id, 2, alias="production")).version.version == 1  # the alias wins
    with pytest.raises(FailedPrecondition, match="version 3 is TRAINING; an alias can point only at a READY"):
        await registry.set_alias(model.id, "canary", 3)
    with pytest.raises(NotFound):
        await registry.set_alias(model.id, "canary", 9)
    for bad in ("Production", "9lives", "", "a" * 64, "with space"):
        with pytest.raises(InvalidArgument, match="is not valid"):
            await registry.set_alias(model.id, bad, 1)
    with pytest.raises(InvalidArgument, match="'latest' is implicit"):
        await registry.set_alias(model.id, "latest", 1)
    with pytest.raises(InvalidArgument, match="version must be >= 1"):
        await registry.set_alias(model.id, "canary", -1)

    assert (await registry.set_alias(model.id, "production", 2)).aliases == {"production": 2}  # moved
    assert (await registry.set_alias(model.id, "production", 0)).aliases == {}  # removed
    with pytest.raises(NotFound, match=r"aliases of this model: none, and latest"):
        await registry.set_alias(model.id, "production", 0)
    await registry.set_alias(model.id, "canary", 2)
    with pytest.raises(NotFound, match=r"aliases of this model: canary, and latest"):
        await registry.servable(model.id, alias="production")


async def test_a_corrupt_version_is_never_served_again(registry: ModelRegistry) -> None:
    model = await model_with(registry, VersionState.READY, VersionState.READY)
    await registry.set_alias(model.id, "production", 2)
    await registry.mark_corrupt(model.id, 2, "model.onnx: sha256 mismatch")
    assert (await registry.get(model.id)).versions[1].state is VersionState.FAILED
    assert (await registry.servable(model.id)).version.version == 1  # latest falls back
    with pytest.raises(FailedPrecondition, match="version 2 is FAILED"):
        await registry.servable(model.id, alias="production")


async def test_change_listeners_hear_of_what_changes_routing(registry: ModelRegistry) -> None:
    heard: list[str] = []

    async def listener(model_id: str) -> None:
        heard.append(model_id)

    async def broken(model_id: str) -> None:
        raise RuntimeError("listener bug")

    registry.on_change(broken)  # NOTE: its failure must not fail the write
    registry.on_change(listener)
    model = await registry.create("topics", "tiny-bert", LABELS, "text")
    await registry.add_version(model, "job-1")
    await registry.add_version(model, "job-2")
    assert heard == []  # a TRAINING version changes nothing served
    await registry.mark_ready(model.id, 1, {})
    await registry.set_alias(model.id, "production", 1)
    await registry.mark_failed(model.id, 2)
    assert heard == [model.id, model.id]


async def test_snapshot_is_cached_until_the_next_write(registry: ModelRegistry) -> None:
    model = await model_with(registry, VersionState.READY)
    snapshot = await registry.snapshot(model.id)
    assert await registry.snapshot(model.id) is snapshot
    await registry.set_alias(model.id, "production", 1)
    fresh = await registry.snapshot(model.id)
    assert fresh is not snapshot and fresh.aliases == {"production": 1}
    version = await registry.add_version(fresh, "job-2")
    assert [v.version for v in (await registry.snapshot(model.id)).versions] == [1, version.version]


async def test_delete_removes_the_model_and_its_files_unless_a_version_trains(
    registry: ModelRegistry, artifacts: ArtifactStore
) -> None:
    deleted: list[str] = []

    async def on_delete(model_id: str) -> None:
        deleted.append(model_id)

    registry.on_delete(on_delete)
    training = await model_with(registry, VersionState.READY, VersionState.TRAINING)
    with pytest.raises(FailedPrecondition, match="version 2 is still training .*cancel the job first"):
        await registry.delete(training.id)

    model = await model_with(registry, VersionState.READY)
    artifacts.version_dir(model.id, 1).mkdir(parents=True)
    await registry.delete(model.id)
    assert deleted == [model.id] and not artifacts.model_dir(model.id).exists()
    with pytest.raises(NotFound):
        await registry.get(model.id)
    with pytest.raises(NotFound):
        await registry.delete(model.id)


async def test_variants_follow_variants_json_and_the_files_present(
    registry: ModelRegistry, store: SQLiteMetadataStore, artifacts: ArtifactStore
) -> None:
    model = await model_with(registry, VersionState.READY, VersionState.READY)
    version_dir = artifacts.version_dir(model.id, 1)
    version_dir.mkdir(parents=True)
    one = await registry.servable(model.id, 1)
    assert set(registry.variants(model.id, 1)) == {"fp32"}  # no variants.json: the exported graph alone
    with pytest.raises(FailedPrecondition, match="has no int8 variant"):
        registry.check_variant(one, "int8")
    with pytest.raises(InvalidArgument, match="variant 'int4' is not one of"):
        registry.check_variant(one, "int4")
    registry.check_variant(one, "fp32")

    (version_dir / "variants.json").write_text(json.dumps({
        "fp32": {"macro_f1": 0.9, "served": True}, "int8": {"macro_f1": 0.89, "served": True},
    }))
    int8 = registry.variants(model.id, 1)["int8"]
    assert not int8.served and int8.reason == "model.int8.onnx is missing"  # re-read: the file changed
    (version_dir / "model.int8.onnx").write_bytes(b"int8")
    # NOTE: variants.json itself did not change; the cache keys on it, so a new registry reads the file again
    fresh = ModelRegistry(store, artifacts)
    assert fresh.variants(model.id, 1)["int8"].served and fresh.variants(model.id, 1)["fp32"].macro_f1 == 0.9
    fresh.check_variant(one, "int8")

    (version_dir / "variants.json").write_text(json.dumps({
        "int8": {"macro_f1": 0.5, "served": False, "reason": "drop 0.4000 exceeds the limit 0.0100"},
    }))
    with pytest.raises(FailedPrecondition, match=r"int8 variant is not served \(drop 0.4000 exceeds"):
        fresh.check_variant(one, "int8")
