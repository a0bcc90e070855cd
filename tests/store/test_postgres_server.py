"""Two real servers on one real PostgreSQL and one data volume: upload -> fine-tune -> predict, each seeing and serving
what the other wrote; then the database goes away and comes back under them (health NOT_SERVING and UNAVAILABLE
while it is gone, loaded models still answering, SERVING again after, no crash)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerThread, make_settings
from tests.fixtures import build_tiny_bert, write_text_dataset
from tests.postgres import PostgresServer, find_binaries
from tuneserve_client import Client, JobState, NotFound, Unavailable

TRAIN_COUNTS = {"sport": 40, "politics": 24, "tech": 12}
QUICK = {"max_steps": 16, "batch_size": 8, "eval_steps": 8, "max_seq_length": 32, "learning_rate": 1e-3,
         "head_learning_rate": 3e-3, "early_stopping_patience": 0, "refit": "false"}
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
DATASETS, PREDICTION = "tuneserve.v1.DatasetService", "tuneserve.v1.PredictionService"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbones") / "tiny-bert")


@pytest.fixture
def start(tmp_path: Path, tiny_bert: Path) -> Iterator[Callable[[str], ServerThread]]:
    """Start a server on the given database URL; all of them share tmp_path/data, as replicas share a volume."""
    threads: list[ServerThread] = []

    def _start(url: str) -> ServerThread:
        settings = make_settings(tmp_path / "data", tiny_bert.parent)
        settings.storage.database_url = url
        threads.append(ServerThread(settings).start())
        return threads[-1]

    yield _start
    for thread in threads:
        thread.close()


def _health(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def _predicts(client: Client, model_id: str, texts: list[str], alias: str) -> bool:
    try:
        return len(client.predict(model_id, texts, alias=alias).predictions) == len(texts)
    except NotFound:
        return False


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test alone: it is stopped and started again under a running server."""
    bin_dir = find_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/postgres on PATH or in /usr/lib/postgresql/*/bin)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_replicas_share_models_and_ride_out_a_database_outage(
    own_postgres: PostgresServer, start: Callable[[str], ServerThread], tiny_bert: Path, tmp_path: Path
) -> None:
    url = own_postgres.create_database()
    first, second = start(url), start(url)
    dataset_file = write_text_dataset(tmp_path / "train.jsonl", TRAIN_COUNTS, seed=1)
    texts = ["the match ended with a late goal", "parliament votes on the new bill"]
    with Client(first.target, timeout=60) as a, Client(second.target, timeout=60) as b, \
            grpc.insecure_channel(first.target) as channel:
        train = a.upload_dataset(dataset_file)
        assert b.get_dataset(train.id).num_rows == sum(TRAIN_COUNTS.values())  # the second server sees it
        job = b.fine_tune(train.id, backbone=str(tiny_bert), model_name="topics", hyperparameters=QUICK)
        done = a.wait_for_job(job.id, timeout=300)  # submitted to one server, followed through the other
        assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
        for client in (a, b):
            assert [m.id for m in client.list_models().models] == [done.model_id]
            prediction = client.predict(done.model_id, texts)
            assert [p.label in TRAIN_COUNTS for p in prediction.predictions] == [True, True]
            assert prediction.model_version == 1
        a.set_model_alias(done.model_id, "prod", 1)  # the second server has the model cached: it notices anyway
        _wait_for(lambda: _predicts(b, done.model_id, texts, alias="prod"), timeout=30)
        assert _health(channel) == SERVING

        own_postgres.stop()
        _wait_for(lambda: _health(channel) == NOT_SERVING)
        assert _health(channel, DATASETS) == NOT_SERVING
        assert _health(channel, PREDICTION) == SERVING
        assert len(a.predict(done.model_id, texts).predictions) == 2  # a loaded model keeps answering
        started = time.monotonic()
        with pytest.raises(Unavailable, match="metadata database postgresql://tuneserve@127.0.0.1:.* is unreachable"):
            a.list_datasets()
        with pytest.raises(Unavailable, match="is unreachable"):
            a.upload_dataset(dataset_file)
        assert time.monotonic() - started < 10  # answered at once, not after waiting out the outage

        own_postgres.start()
        _wait_for(lambda: _health(channel) == SERVING)
        assert _health(channel, DATASETS) == SERVING
        again = a.upload_dataset(dataset_file)
        assert {d.id for d in b.list_datasets().datasets} == {train.id, again.id}
    assert first.app is not None and second.app is not None  # neither server stopped; both close cleanly now


def test_a_job_cancelled_through_another_server_stops(
    postgres: PostgresServer, start: Callable[[str], ServerThread], tiny_bert: Path, tmp_path: Path
) -> None:
    url = postgres.create_database()
    runs, other = start(url), start(url)
    with Client(runs.target, timeout=60) as a, Client(other.target, timeout=60) as b:
        train = a.upload_dataset(write_text_dataset(tmp_path / "train.jsonl", TRAIN_COUNTS, seed=1))
        job = a.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters={**QUICK, "max_steps": 100_000})
        _wait_for(lambda: b.get_job(job.id).state == JobState.JOB_STATE_RUNNING, timeout=120)
        assert b.cancel_job(job.id).state == JobState.JOB_STATE_RUNNING  # it is the other server's to stop
        done = b.wait_for_job(job.id, timeout=120)
        assert done.state == JobState.JOB_STATE_CANCELLED and done.error == "cancelled by request"
