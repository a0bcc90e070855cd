"""AsyncClient and the sync Client against the fake server of conftest.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tuneserve_client import (
    AsyncClient,
    Client,
    DatasetFormat,
    DeadlineExceeded,
    Hyperparameters,
    JobEvent,
    JobState,
    NotFound,
    ResourceExhausted,
)

from .conftest import FakeTuneServe

DATA = b"text,label\ngood,pos\nbad,neg\nfine,pos\n"


async def test_upload_dataset_streams_metadata_then_chunks(fake: FakeTuneServe, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(DATA)
    async with AsyncClient(fake.target) as client:
        dataset = await client.upload_dataset(path, chunk_size=8, label_column="y")
    first, *chunks = fake.requests["UploadDataset"][0]
    assert first.WhichOneof("payload") == "metadata"
    assert first.metadata.name == "train.csv"
    assert first.metadata.format == DatasetFormat.DATASET_FORMAT_UNSPECIFIED  # the server infers it from the name
    assert (first.metadata.text_column, first.metadata.label_column) == ("", "y")
    assert len(chunks) == 5 and all(c.WhichOneof("payload") == "chunk" for c in chunks)
    assert b"".join(c.chunk for c in chunks) == DATA
    assert (dataset.id, dataset.size_bytes) == ("ds-new", len(DATA))


async def test_upload_dataset_bytes_with_format_name(fake: FakeTuneServe) -> None:
    async with AsyncClient(fake.target) as client:
        dataset = await client.upload_dataset_bytes(b'{"text": "a", "label": "b"}\n', name="x", format="jsonl")
    assert dataset.format == DatasetFormat.DATASET_FORMAT_JSONL


async def test_upload_errors_before_any_call(fake: FakeTuneServe, tmp_path: Path) -> None:
    async with AsyncClient(fake.target) as client:
        with pytest.raises(FileNotFoundError):
            await client.upload_dataset(tmp_path / "missing.csv")
        with pytest.raises(ValueError, match="XML"):
            await client.upload_dataset_bytes(DATA, name="x", format="xml")
        with pytest.raises(ValueError, match="chunk_size"):
            await client.upload_dataset_bytes(DATA, name="x", chunk_size=0)
    assert "UploadDataset" not in fake.requests


async def test_fine_tune_sets_only_the_given_hyperparameters(fake: FakeTuneServe) -> None:
    async with AsyncClient(fake.target) as client:
        job = await client.fine_tune("ds-1", backbone="minilm-l6", hyperparameters={"epochs": 2, "seed": None})
        await client.fine_tune("ds-1", hyperparameters=Hyperparameters(learning_rate=1e-4))
        await client.fine_tune("ds-1")
        with pytest.raises(ValueError, match="bogus"):
            await client.fine_tune("ds-1", hyperparameters={"bogus": 1})
    assert job.state == JobState.JOB_STATE_QUEUED
    with_mapping, with_message, without = fake.requests["FineTune"]
    assert with_mapping.backbone == "minilm-l6"
    assert [f.name for f, _ in with_mapping.hyperparameters.ListFields()] == ["epochs"]
    assert with_message.hyperparameters.learning_rate == 1e-4
    assert not without.HasField("hyperparameters")


async def test_list_jobs_state_filter(fake: FakeTuneServe) -> None:
    async with AsyncClient(fake.target) as client:
        await client.list_jobs(state="running", page_size=5)
        await client.list_jobs(state=JobState.JOB_STATE_FAILED)
        await client.list_jobs()
    assert [r.state for r in fake.requests["ListJobs"]] == [
        JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_UNSPECIFIED
    ]  # fmt: skip
    assert fake.requests["ListJobs"][0].page_size == 5


async def test_watch_job_yields_events_after_sequence(fake: FakeTuneServe) -> None:
    async with AsyncClient(fake.target) as client:
        sequences = [event.sequence async for event in client.watch_job("job-1", after_sequence=3)]
    assert sequences == [4, 5, 6, 7]


async def test_wait_for_job_resumes_a_broken_stream(fake: FakeTuneServe) -> None:
    fake.watch_breaks_after = 2
    seen: list[JobEvent] = []
    async with AsyncClient(fake.target) as client:
        job = await client.wait_for_job("job-1", on_event=seen.append)
    assert [e.sequence for e in seen] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.after_sequence for r in fake.requests["WatchJob"]] == [0, 2]
    assert job.state == JobState.JOB_STATE_SUCCEEDED and job.model_id == "model-1"


async def test_wait_for_job_timeout(fake: FakeTuneServe) -> None:
    fake.watch_hangs = True
    async with AsyncClient(fake.target) as client:
        with pytest.raises(DeadlineExceeded, match=r"did not finish within 0\.2 s"):
            await client.wait_for_job("job-1", timeout=0.2)


async def test_predict_and_evaluate(fake: FakeTuneServe) -> None:
    async with AsyncClient(fake.target) as client:
        response = await client.predict("model-1", ["a", "b"], top_k=1)
        report = (await client.evaluate("model-1", "ds-1", version=2)).report
    assert [p.label for p in response.predictions] == ["pos", "pos"]
    assert len(response.predictions[0].scores) == 1
    assert fake.requests["Predict"][0].texts == ["a", "b"]
    assert fake.requests["Evaluate"][0].version == 2
    assert report.accuracy == pytest.approx(0.9)


async def test_max_message_bytes(fake: FakeTuneServe) -> None:
    fake.predict_label_size = 5 * 1024 * 1024  # over gRPC's default receive limit of 4 MiB
    async with AsyncClient(fake.target) as client:
        response = await client.predict("model-1", ["x" * 5 * 1024 * 1024])
    assert len(response.predictions[0].label) > 5 * 1024 * 1024
    async with AsyncClient(fake.target, max_message_bytes=4 * 1024 * 1024) as client:
        with pytest.raises(ResourceExhausted):
            await client.predict("model-1", ["x"])


async def test_injected_channel_stays_open(fake: FakeTuneServe) -> None:
    import grpc.aio

    async with grpc.aio.insecure_channel(fake.target) as channel:
        async with AsyncClient(channel=channel) as client:
            await client.get_dataset("ds-1")
        assert (await AsyncClient(channel=channel).get_dataset("ds-1")).id == "ds-1"


# The sync Client: the same calls through its private event loop


async def test_sync_client_from_inside_a_running_loop(fake: FakeTuneServe) -> None:
    with Client(fake.target) as client:  # its own loop thread: works even where another loop runs
        assert client.get_dataset("ds-1").id == "ds-1"


def test_sync_client(fake: FakeTuneServe, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(DATA)
    with Client(fake.target, metadata=[("x-test", "1")]) as client:
        assert client.upload_dataset(str(path)).size_bytes == len(DATA)
        assert client.list_datasets().next_page_token == "page-2"
        assert client.fine_tune("ds-1", hyperparameters={"epochs": 1}).id == "job-1"
        assert [e.sequence for e in client.watch_job("job-1")] == [1, 2, 3, 4, 5, 6, 7]
        events: list[JobEvent] = []
        assert client.wait_for_job("job-1", on_event=events.append).state == JobState.JOB_STATE_SUCCEEDED
        assert len(events) == 7
        assert client.predict("model-1", ["a"]).predictions[0].label == "pos"
        assert client.cancel_job("job-1").state == JobState.JOB_STATE_CANCELLED
        assert client.list_backbones().backbones[0].is_default
        with pytest.raises(NotFound):
            client.get_dataset("nope")


def test_sync_watch_job_stopped_early(fake: FakeTuneServe) -> None:
    fake.watch_hangs = True
    with Client(fake.target) as client:
        for event in client.watch_job("job-1"):
            if event.sequence == 2:
                break
        assert client.get_job("job-1").id == "job-1"  # the client is still usable


def test_sync_client_close(fake: FakeTuneServe) -> None:
    client = Client(fake.target)
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.get_job("job-1")


def test_sync_wait_for_job_timeout(fake: FakeTuneServe) -> None:
    fake.watch_hangs = True
    with Client(fake.target) as client, pytest.raises(DeadlineExceeded):
        client.wait_for_job("job-1", timeout=0.2)


def test_async_client_under_asyncio_run(fake: FakeTuneServe) -> None:
    async def call() -> str:
        async with AsyncClient(fake.target) as client:
            return (await client.get_job("job-1")).id

    assert asyncio.run(call()) == "job-1"


def test_sync_client_refuses_calls_from_on_event(fake: FakeTuneServe) -> None:
    with Client(fake.target) as client:

        def on_event(event: JobEvent) -> None:
            client.get_job(event.job_id)

        with pytest.raises(RuntimeError, match="on_event"):
            client.wait_for_job("job-1", on_event=on_event)
