"""Bearer tokens and roles, through a real server and the real client: who may call what, and what a refused caller
is told. Health checking and reflection stay open."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import ServerThread
from tests.grpc.conftest import ADMIN_TOKEN, PREDICT_TOKEN, TOKENS, StartServer
from tuneserve.grpc.auth import ADMIN, OPEN, PREDICT, REQUIRED_ROLE
from tuneserve_client import Client, NotFound, PermissionDenied, Unauthenticated
from tuneserve_client.proto.inference import grpc_service_pb2
from tuneserve_client.proto.tuneserve.v1 import datasets_pb2, models_pb2, prediction_pb2, training_pb2

MISSING_MODEL = "model-0000000000000000"


@pytest.fixture
def server(start_server: StartServer) -> ServerThread:
    return start_server(tokens=TOKENS)


def test_every_registered_rpc_is_in_the_role_table() -> None:
    for proto in (datasets_pb2, training_pb2, models_pb2, prediction_pb2, grpc_service_pb2):
        for service in proto.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"/{service.full_name}/{method.name}" in REQUIRED_ROLE
    predict_only = {method for method, role in REQUIRED_ROLE.items() if role == PREDICT}
    assert "/tuneserve.v1.PredictionService/Predict" in predict_only
    assert "/inference.GRPCInferenceService/ModelInfer" in predict_only
    assert REQUIRED_ROLE["/inference.GRPCInferenceService/RepositoryModelLoad"] == ADMIN
    assert REQUIRED_ROLE["/grpc.health.v1.Health/Check"] == OPEN
    assert not any(m.startswith("/tuneserve.v1.DatasetService/") for m in predict_only)


def test_a_call_without_token_is_unauthenticated(server: ServerThread) -> None:
    with Client(server.target) as client:
        with pytest.raises(Unauthenticated, match="missing bearer token"):
            client.list_datasets()
        with pytest.raises(Unauthenticated):
            client.predict(MISSING_MODEL, ["x"])
        with pytest.raises(Unauthenticated):
            list(client.watch_job("job-0"))  # server streaming
        with pytest.raises(Unauthenticated):
            client.upload_dataset_bytes(b"text,label\na,x\nb,y\n", name="a.csv")  # client streaming


def test_an_unknown_or_malformed_token_is_unauthenticated(server: ServerThread) -> None:
    with Client(server.target, token=ADMIN_TOKEN[:-1] + "b") as client, pytest.raises(
        Unauthenticated, match="invalid bearer token"
    ):
        client.list_datasets()
    with Client(server.target, metadata=[("authorization", f"Basic {ADMIN_TOKEN}")]) as client, pytest.raises(
        Unauthenticated, match="expected `Bearer TOKEN`"
    ):
        client.list_datasets()


def test_predict_role_may_infer_and_read_models_only(server: ServerThread) -> None:
    with Client(server.target, token=PREDICT_TOKEN) as client:
        with pytest.raises(NotFound):  # past authorization: the servicer answered
            client.predict(MISSING_MODEL, ["x"])
        with pytest.raises(NotFound):
            client.get_model(MISSING_MODEL)
        assert client.list_models().models == []
        assert client.list_backbones().backbones
        for call in (
            client.list_datasets,
            lambda: client.upload_dataset_bytes(b"text,label\na,x\nb,y\n", name="a.csv"),
            lambda: client.fine_tune("ds-0000000000000000"),
            lambda: client.delete_model(MISSING_MODEL),
            lambda: client.load_model(MISSING_MODEL),
        ):
            with pytest.raises(PermissionDenied, match="the predict role may not call .*needs the admin role"):
                call()


def test_admin_role_may_call_everything(server: ServerThread) -> None:
    with Client(server.target, token=ADMIN_TOKEN) as client:
        dataset = client.upload_dataset_bytes(b"text,label\nhello,x\nworld,y\n", name="a.csv")
        assert [d.id for d in client.list_datasets().datasets] == [dataset.id]
        with pytest.raises(NotFound):
            client.predict(MISSING_MODEL, ["x"])


def test_health_and_reflection_are_open(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {s.name for s in next(answers).list_services_response.service}
        assert "tuneserve.v1.PredictionService" in services


def test_refusals_are_counted_in_the_metrics(server: ServerThread) -> None:
    with Client(server.target, token=PREDICT_TOKEN) as client, pytest.raises(PermissionDenied):
        client.list_datasets()
    assert server.app is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{server.app.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'method="/tuneserve.v1.DatasetService/ListDatasets"' in text
    assert 'code="PERMISSION_DENIED"' in text
    assert PREDICT_TOKEN not in text


def test_tokens_file_json_and_yaml(start_server: StartServer, tmp_path: Path) -> None:
    json_file = tmp_path / "tokens.json"
    json_file.write_text(json.dumps({ADMIN_TOKEN: "admin"}))
    yaml_file = tmp_path / "tokens.yaml"
    yaml_file.write_text(f"{PREDICT_TOKEN}: predict\n")
    for path, token, allowed in ((json_file, ADMIN_TOKEN, True), (yaml_file, PREDICT_TOKEN, False)):
        server = start_server(tokens_file=path)
        with Client(server.target, token=token) as client:
            if allowed:
                client.list_datasets()
            else:
                with pytest.raises(PermissionDenied):
                    client.list_datasets()


def test_no_tokens_means_auth_off_with_one_warning(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tuneserve"):
        server = start_server()
    warnings = [r for r in caplog.records if "authentication is off" in r.getMessage()]
    assert len(warnings) == 1
    with Client(server.target) as client:
        client.list_datasets()
