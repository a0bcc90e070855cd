"""Every request is checked before a servicer sees it: names and ids at most max_name_chars (256) characters, nested
and streamed ones included, Predict texts exempt; bytes that do not decode are INVALID_ARGUMENT, not UNKNOWN or
INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerThread
from tuneserve.errors import InvalidArgument as ServerInvalidArgument
from tuneserve.grpc.v1.validation import check_names
from tuneserve_client import Client, InvalidArgument, NotFound, PredictRequest, PredictStreamRequest
from tuneserve_client.proto.inference import grpc_service_pb2 as pb

OK_ID = "m" * 256
LONG_ID = "m" * 257


def test_names_and_ids_up_to_the_limit_pass(server: ServerThread) -> None:
    with Client(server.target) as client:
        with pytest.raises(NotFound):
            client.get_dataset(OK_ID)
        with pytest.raises(NotFound):
            client.predict(OK_ID, ["t" * 5000])  # texts have their own, larger limit


def test_longer_names_and_ids_are_invalid_argument(server: ServerThread) -> None:
    with Client(server.target) as client:
        with pytest.raises(InvalidArgument, match=r"^id has 257 characters, more than 256 \(limit max_name_chars\)"):
            client.get_dataset(LONG_ID)
        with pytest.raises(InvalidArgument, match=r"^compare\[1\]\.model_id has 257 characters"):
            client.evaluate("model-0", "ds-0", compare=["model-1", LONG_ID])
        with pytest.raises(InvalidArgument, match=r"^baselines\[0\] has 257 characters"):
            client.fine_tune("ds-0", baselines=[LONG_ID])
        with pytest.raises(InvalidArgument, match=r"^metadata\.name has 261 characters"):
            client.upload_dataset_bytes(b"text,label\na,x\nb,y\n", name=LONG_ID + ".csv")
        requests = [PredictStreamRequest(request_id=LONG_ID, request=PredictRequest(model_id="m", texts=["x"]))]
        with pytest.raises(InvalidArgument, match=r"^request_id has 257 characters"):
            list(client.predict_stream(requests))


def test_labels_longer_than_the_limit_are_refused(server: ServerThread) -> None:
    with Client(server.target) as client, pytest.raises(InvalidArgument, match=r"line 3: label has 257 characters"):
        client.upload_dataset_bytes(f"text,label\na,x\nb,{LONG_ID}\n".encode(), name="a.csv")


@pytest.mark.parametrize(
    ("method", "streaming"),
    [("/tuneserve.v1.DatasetService/GetDataset", False), ("/tuneserve.v1.DatasetService/UploadDataset", True)],
)
def test_bytes_that_do_not_decode_are_invalid_argument(server: ServerThread, method: str, streaming: bool) -> None:
    not_utf8 = b"\x0a\x02\xff\xfe"  # field 1 (a string) holding bytes that are not UTF-8
    with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as caught:
        if streaming:
            channel.stream_unary(method)(iter([b"\x0a\x03" + not_utf8[:3]]), timeout=10)
        else:
            channel.unary_unary(method)(not_utf8, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "malformed request message" in caught.value.details()  # type: ignore[attr-defined]


def test_streaming_behaviors_written_as_coroutines_still_stream(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as channel:
        updates = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(updates).status == health_pb2.HealthCheckResponse.SERVING  # Watch calls context.write
        updates.cancel()


@pytest.mark.parametrize(
    ("message", "where"),
    [
        (PredictRequest(model_id="m\x1b[31m", texts=["x"]), r"^model_id holds U\+001B \(ESCAPE\) at character 1"),
        (PredictRequest(model_id="m", alias="prod\n"), r"^alias holds U\+000A \(LINE FEED\)"),
        (pb.ModelMetadataRequest(name="m\x9b2J"), r"^name holds U\+009B"),
        (pb.ModelInferRequest(model_name="m", outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(
            name="label\u202e")]), r"^outputs\[0\]\.name holds U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"),
    ],
)
def test_control_characters_in_names_are_invalid_argument(message: Message, where: str) -> None:
    with pytest.raises(ServerInvalidArgument, match=where):
        check_names(message, 256)


def test_free_text_may_hold_control_characters() -> None:
    check_names(PredictRequest(model_id="m", texts=["line one\nline two\x1b"]), 256)
