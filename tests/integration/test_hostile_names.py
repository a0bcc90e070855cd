"""Names, labels and texts a careless or hostile caller sends: control characters (ANSI escape sequences, newlines)
refused in names and labels, Open Inference model names length-checked, empty Predict texts refused, duplicate
RecommendBackbone candidates found after stripping (issue 16, item 10). Each answer is INVALID_ARGUMENT naming the
field, on a real server through the real client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.fixtures import write_text_dataset
from tests.integration.conftest import TRAIN_COUNTS
from tuneserve_client import Client, InvalidArgument
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

ESCAPE = "\x1b[2J\x1b[31mowned"


@pytest.fixture
def stub(client: Client, server) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def test_control_characters_in_names_are_refused(client: Client, train_file: Path) -> None:
    # NOTE: from bytes, sent at once: the server refuses the first message, and a file's later chunks could find the
    # call already ended (grpc's aio client then answers INTERNAL "Failed execute_batch" instead of the status)
    content = train_file.read_bytes()
    with pytest.raises(InvalidArgument, match=r"^metadata.name holds U\+001B \(ESCAPE\) at character 0"):
        client.upload_dataset_bytes(content, name=ESCAPE + ".jsonl")
    with pytest.raises(InvalidArgument, match=r"^metadata.name holds U\+000A \(LINE FEED\)"):
        client.upload_dataset_bytes(content, name="train\nfake log line.jsonl")
    dataset = client.upload_dataset(train_file)
    with pytest.raises(InvalidArgument, match=r"^model_name holds U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"):
        client.fine_tune(dataset.id, model_name="model\u202egpj.exe")
    assert client.list_jobs().jobs == []
    assert [d.name for d in client.list_datasets().datasets] == ["train.jsonl"]


def test_control_characters_in_labels_are_refused(client: Client) -> None:
    content = b"text,label\nhello,sport\nworld,\x1b[31mpolitics\n"
    with pytest.raises(InvalidArgument, match=r"^line 3: label holds U\+001B \(ESCAPE\)"):
        client.upload_dataset_bytes(content, name="a.csv")


def test_a_long_open_inference_model_name_is_invalid_argument(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    """Echoed into NOT_FOUND, a 20,000-character name outgrew gRPC's metadata limit (RESOURCE_EXHAUSTED: "received
    metadata size exceeds hard limit")."""
    name = "m" * 20_000
    calls = [
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=30),
        lambda: stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=30),
        lambda: stub.ModelInfer(pb.ModelInferRequest(model_name=name), timeout=30),
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="m", version="1" * 20_000), timeout=30),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "has 20000 characters, more than 256 (limit max_name_chars)" in (error.value.details() or "")
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="no-such-model"), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_empty_texts_are_refused_by_predict(client: Client) -> None:
    with pytest.raises(InvalidArgument, match=r"^texts\[1\] is empty or only whitespace"):
        client.predict("model-0", ["a text", ""])
    with pytest.raises(InvalidArgument, match=r"^texts\[0\] is empty or only whitespace"):
        client.predict("model-0", [" \n"])


def test_recommend_finds_duplicate_candidates_after_stripping(client: Client, tmp_path: Path) -> None:
    dataset = client.upload_dataset(write_text_dataset(tmp_path / "d.jsonl", TRAIN_COUNTS, seed=3))
    with pytest.raises(InvalidArgument, match="backbones lists 'minilm-l6' more than once"):
        client.recommend_backbone(dataset.id, backbones=["minilm-l6", " minilm-l6 "], time_budget_seconds=5,
                                  timeout=60)
