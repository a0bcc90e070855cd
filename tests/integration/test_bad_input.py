"""Every bad request gets the right status code and a message that says what to fix; the server keeps serving and
nothing stored is lost."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread, make_settings
from tests.integration.conftest import QUICK
from tuneserve_client import Client, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

MISSING = "ds-0000000000000000"


@pytest.fixture
def stored(client: Client, train_file: Path):  # type: ignore[no-untyped-def]
    return client.upload_dataset(train_file)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", b"text,category\nhello,x\n", "line 1: missing column 'label'"),
        ("a.csv", b"text,label\nhello,x\nworld\n", "line 3: expected 2 fields"),
        ("a.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b"}\n', "line 2: missing field 'label'"),
        ("a.jsonl", b'{"text": "a", "label": "x"}\nnot json\n', "line 2: not valid JSON"),
        ("a.csv", b"text,label\ncaf\xe9,x\n", "line 2: not valid UTF-8"),
        ("a.csv", b"text,label\na,x\nb,x\n", "at least 2 distinct labels"),
        ("a.csv", b"", "empty"),
        ("a.csv", b"text,label\n", "no rows"),
        ("a.jsonl", b'{"text": "", "label": "x"}\n', "line 1: empty text"),
        ("a.txt", b"text,label\na,x\n", "cannot tell the dataset format"),
    ],
)
def test_malformed_datasets(client: Client, stored, name: str, content: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument, match=message):
        client.upload_dataset_bytes(content, name=name)
    assert client.get_dataset(stored.id).num_rows == stored.num_rows
    assert len(client.list_datasets().datasets) == 1


def test_unknown_ids_are_not_found(client: Client) -> None:
    calls = [
        lambda: client.get_dataset(MISSING), lambda: client.delete_dataset(MISSING),
        lambda: client.get_job("job-0"), lambda: client.cancel_job("job-0"), lambda: list(client.watch_job("job-0")),
        lambda: client.get_model("model-0"), lambda: client.delete_model("model-0"),
        lambda: client.predict("model-0", ["x"]), lambda: client.evaluate("model-0", MISSING),
        lambda: client.fine_tune(MISSING),
    ]
    for call in calls:
        with pytest.raises(NotFound, match="not found"):
            call()


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"epochs": 0}, r"epochs = 0 is out of range"),
        ({"learning_rate": -1.0}, r"learning_rate = -1.0 is out of range"),
        ({"batch_size": 5000}, r"batch_size = 5000 is out of range"),
        ({"metric_for_best_model": "bleu"}, r"metric_for_best_model must be one of"),
        ({"validation_fraction": 0.9}, r"validation_fraction = 0.9 is out of range"),
    ],
)
def test_invalid_hyperparameters(client: Client, stored, hyperparameters: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument, match=message):
        client.fine_tune(stored.id, hyperparameters=hyperparameters)
    assert client.list_jobs().jobs == []


def test_bad_backbones(client: Client, stored, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument, match="minilm-l6"):
        client.fine_tune(stored.id, backbone="no-such-backbone")
    outside = Path(tempfile.mkdtemp(prefix="not-allowed-"))  # outside every allowed backbone directory
    shutil.copy(tiny_bert / "config.json", outside / "config.json")
    with pytest.raises(InvalidArgument, match="TUNESERVE_TRAINING__BACKBONE_DIRS"):
        client.fine_tune(stored.id, backbone=str(outside))
    shutil.rmtree(outside)
    with pytest.raises(InvalidArgument):
        client.fine_tune(stored.id, backbone="someorg/some-model")  # hub ids are off by default


def test_predict_limits(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="model_id is required"):
        client.predict("", ["x"])
    with pytest.raises(InvalidArgument, match="texts is empty"):
        client.predict("model-0", [])
    with pytest.raises(InvalidArgument, match="max_predict_batch"):
        client.predict("model-0", ["x"] * 257)
    with pytest.raises(InvalidArgument, match="max_text_chars"):
        client.predict("model-0", ["x" * 100_001])
    with pytest.raises(InvalidArgument, match="top_k"):
        client.predict("model-0", ["x"], top_k=-1)


def test_delete_dataset_in_use_is_refused(client: Client, stored, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    job = client.fine_tune(stored.id, backbone=str(tiny_bert), hyperparameters={**QUICK, "max_steps": 100_000})
    with pytest.raises(FailedPrecondition, match="cancel it first"):
        client.delete_dataset(stored.id)
    with pytest.raises(FailedPrecondition, match="still training"):
        client.delete_model(job.model_id)
    client.cancel_job(job.id)
    client.wait_for_job(job.id, timeout=60)
    client.delete_dataset(stored.id)
    with pytest.raises(NotFound):
        client.get_dataset(stored.id)


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = make_settings(tmp_path / "data", tmp_path)
    settings.server.max_message_bytes = 1024 * 1024
    settings.limits.max_dataset_bytes = 4096
    thread = ServerThread(settings).start()
    yield thread
    thread.close()


def test_too_large_requests(small_server: ServerThread, tmp_path: Path) -> None:
    with Client(small_server.target) as client:
        with pytest.raises(ResourceExhausted, match="max_dataset_bytes"):
            client.upload_dataset_bytes(b"text,label\n" + b"hello,x\nworld,y\n" * 1000, name="big.csv")
        with pytest.raises(ResourceExhausted):
            client.predict("model-0", ["y" * 60_000] * 20)  # 1.2 MB message > 1 MiB limit
        ok = client.upload_dataset_bytes(b"text,label\nhello,x\nworld,y\n", name="small.csv")
        assert client.get_dataset(ok.id).num_rows == 2


@pytest.mark.parametrize(
    ("search", "budget", "message"),
    [
        (-1, 0.0, "search = -1 is out of range"),
        (10_000, 0.0, "search = 10000 is out of range"),
        (2, -5.0, "search_budget_seconds = -5.0 must be >= 0"),
        (0, 30.0, "applies only to a search"),
    ],
)
def test_invalid_search(client: Client, stored, search: int, budget: float, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument, match=message):
        client.fine_tune(stored.id, search=search, search_budget_seconds=budget)
