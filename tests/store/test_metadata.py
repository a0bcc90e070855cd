"""The MetadataStore contract, run against both backends (SQLite and a real PostgreSQL): what the core writes it reads
back the same, pages are stable, multi-statement writes are atomic, and a QUEUED job is claimed exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from tests.store.records import T0, dataset, job, model, progress
from tuneserve.settings import StorageSettings
from tuneserve.store import MetadataStore, metadata_store
from tuneserve.types import JobEventRecord, JobState, ModelRecord, ModelVersionRecord, Page, VersionState


def open_store(url: str) -> MetadataStore:
    return metadata_store(StorageSettings(database_url=url))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MetadataStore]:
    s = open_store(database_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_datasets_round_trip_and_page(store: MetadataStore) -> None:
    for n in range(5):
        await store.add_dataset(dataset(n))
    assert await store.get_dataset("ds-3") == dataset(3)
    assert await store.get_dataset("nope") is None
    pages = [await store.list_datasets(Page(2, offset)) for offset in (0, 2, 4, 6)]
    assert [[d.id for d in p] for p in pages] == [["ds-4", "ds-3"], ["ds-2", "ds-1"], ["ds-0"], []]
    await store.delete_dataset("ds-3")
    assert await store.get_dataset("ds-3") is None
    assert len(await store.list_datasets(Page(100, 0))) == 4


async def test_jobs_states_and_events(store: MetadataStore) -> None:
    for n, state in enumerate([JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.QUEUED]):
        await store.add_job(job(n, state, dataset_id="ds-1" if n < 3 else "ds-2"))
    running = await store.get_job("job-1")
    assert running == job(1, JobState.RUNNING)
    running.progress, running.result = {"step": 5, "train_loss": 0.25}, {"validation_metrics": {"f1": 0.5}}
    running.state, running.error, running.end_time = JobState.FAILED, "out of memory", T0 + 99
    await store.update_job(running)
    assert await store.get_job("job-1") == running
    queued = await store.list_jobs(Page(10, 0), [JobState.QUEUED])
    assert [j.id for j in queued] == ["job-3", "job-0"]
    assert [j.id for j in await store.list_jobs(Page(2, 1))] == ["job-2", "job-1"]
    assert await store.count_jobs_by_state() == {"QUEUED": 2, "FAILED": 1, "SUCCEEDED": 1}
    assert [j.id for j in await store.jobs_referencing_dataset("ds-1")] == ["job-0"]

    assert await store.last_job_event_sequence("job-0") == 0
    for seq in (1, 2, 3):
        await store.add_job_event(progress("job-0", seq))
    await store.add_job_event(JobEventRecord("job-3", 1, T0, "state_changed", {}, "queued"))
    events = await store.job_events("job-0", after_sequence=1)
    assert [(e.sequence, e.data, e.message, e.time) for e in events] == [
        (2, {"step": 2}, "step 2", T0 + 2), (3, {"step": 3}, "step 3", T0 + 3)]
    assert await store.last_job_event_sequence("job-0") == 3
    with pytest.raises(Exception):  # noqa: B017 - each backend's own integrity error; (job, sequence) is unique
        await store.add_job_event(JobEventRecord("job-0", 3, T0, "progress", {}, "again"))
    assert len(await store.job_events("job-0")) == 3  # the store is still usable after the failed write


async def test_claim_job_exactly_once(store: MetadataStore, database_url: str) -> None:
    await store.add_job(job(1))
    await store.add_job(job(2, JobState.CANCELLED))
    other = open_store(database_url)  # a second server on the same database
    await other.open()
    try:
        claims = await asyncio.gather(*[s.claim_job("job-1", T0 + 5) for s in [store, other] * 4])
    finally:
        await other.close()
    won = [c for c in claims if c is not None]
    assert len(won) == 1 and won[0].state is JobState.RUNNING and won[0].start_time == T0 + 5
    assert (await store.get_job("job-1")).state is JobState.RUNNING  # type: ignore[union-attr]
    assert await store.claim_job("job-2", T0) is None  # cancelled while it waited
    assert await store.claim_job("nope", T0) is None


async def test_models_versions_aliases(store: MetadataStore) -> None:
    for n in range(3):
        await store.add_model(model(n, kind="finetuned" if n < 2 else "scratch", source_job_id="job-7"))
    training = ModelVersionRecord("model-1", 1, VersionState.TRAINING, "job-7", {}, 0, T0)
    await store.put_model_version(training)
    await store.put_model_version(ModelVersionRecord("model-1", 2, VersionState.TRAINING, "job-8", {}, 0, T0 + 1))
    ready = dataclasses.replace(training, state=VersionState.READY, validation_metrics={"f1": 0.75},
                                onnx_size_bytes=5_000_000_000)
    await store.put_model_version(ready)  # the same version again: an update, not a second row
    await store.set_model_alias("model-1", "prod", 1)
    await store.set_model_alias("model-1", "prod", 2)
    await store.set_model_alias("model-1", "canary", 1)

    stored = await store.get_model("model-1")
    assert stored is not None
    assert [(v.version, v.state, v.validation_metrics, v.onnx_size_bytes) for v in stored.versions] == [
        (1, VersionState.READY, {"f1": 0.75}, 5_000_000_000), (2, VersionState.TRAINING, {}, 0)]
    assert stored.aliases == {"canary": 1, "prod": 2} and stored.create_time == T0 + 1
    await store.delete_model_alias("model-1", "canary")
    assert (await store.get_model("model-1")).aliases == {"prod": 2}  # type: ignore[union-attr]

    first, second = await store.list_models(Page(2, 0)), await store.list_models(Page(2, 2))
    assert [m.id for m in first] == ["model-2", "model-1"] and [m.id for m in second] == ["model-0"]
    assert [len(m.versions) for m in first] == [0, 2] and first[1].aliases == {"prod": 2}
    assert [(m.id, m.kind) for m in await store.models_from_job("job-7")] == [
        ("model-0", "finetuned"), ("model-1", "finetuned"), ("model-2", "scratch")]

    await store.delete_model("model-1")
    assert await store.get_model("model-1") is None
    await store.add_model(ModelRecord("model-1", "again", "text", "tiny-bert", ["a"], T0))
    again = await store.get_model("model-1")  # nothing of the deleted model's versions or aliases is left
    assert again is not None and (again.versions, again.aliases) == ([], {})


async def test_reopen_keeps_everything(database_url: str) -> None:
    first = open_store(database_url)
    await first.open()
    await first.add_dataset(dataset(1))
    await first.close()
    second = open_store(database_url)
    await second.open()  # the schema already exists: opening again changes nothing
    try:
        assert await second.get_dataset("ds-1") == dataset(1)
    finally:
        await second.close()


async def test_replicas_starting_together_create_the_schema_once(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(4)]
    await asyncio.gather(*[s.open() for s in stores])
    try:
        await stores[0].add_dataset(dataset(1))
        assert [await s.get_dataset("ds-1") for s in stores] == [dataset(1)] * 4
    finally:
        for s in stores:
            await s.close()


async def test_orphaned_jobs(store: MetadataStore) -> None:
    for n in (1, 2, 3):
        await store.add_job(job(n))
    await store.claim_job("job-1", T0)
    await store.claim_job("job-2", T0)
    await store.beat_jobs(["job-2"], T0 + 100)  # job-2's server is alive; job-1's stopped beating at T0
    orphans = {j.id for j in await store.orphaned_jobs(stale_before=T0 + 50)}
    # on a server's own SQLite file every RUNNING job at start-up is an orphan; on a shared database only stale ones
    assert orphans == ({"job-1"} if store.shared else {"job-1", "job-2"})


async def test_cancel_through_another_server(store: MetadataStore) -> None:
    for n in (1, 2, 3):
        await store.add_job(job(n))
    await store.claim_job("job-1", T0)
    await store.claim_job("job-2", T0)
    assert await store.beat_jobs(["job-1", "job-2"], T0 + 1) == []
    assert await store.request_cancel("job-2") is True
    assert await store.request_cancel("job-3") is False  # QUEUED: the server that has it cancels it itself
    assert await store.beat_jobs(["job-1", "job-2"], T0 + 2) == ["job-2"]
    assert await store.beat_jobs([], T0 + 3) == []
