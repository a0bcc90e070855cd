"""The Open Inference Protocol (KServe v2 / Triton gRPC) on tuneserve's port: the real tritonclient (in a subprocess,
see tritonclient_probe.py) against a real server with one trained tiny model, and every bad input through tuneserve's
own `inference` stubs, asserting the status code and the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts, write_text_dataset
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tuneserve_client import Client, JobState
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

PROBE = Path(__file__).with_name("tritonclient_probe.py")
TEXTS = [text for text, _ in make_texts({"sport": 3, "politics": 3, "tech": 2}, seed=7)]


@dataclass
class Served:
    server: ServerThread
    model_id: str

    @property
    def target(self) -> str:
        return self.server.target

    def probe(self, *steps: str, texts: list[str] = TEXTS) -> dict[str, Any]:
        """Run tritonclient against the server; one JSON result per step."""
        command = [sys.executable, str(PROBE), self.target, self.model_id, *steps, "--texts", json.dumps(texts)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        with Client(self.target) as client:
            response = client.predict(self.model_id, texts)
        return [{s.label: s.score for s in p.scores} for p in response.predictions]

    def loaded(self) -> bool:
        with Client(self.target) as client:
            return any(v.loaded for v in client.get_model(self.model_id).versions)


@pytest.fixture(scope="module")
def served(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("open-inference")
    server = ServerThread(make_settings(root / "data", tmp_path_factory.getbasetemp())).start()
    try:
        with Client(server.target) as client:
            train = client.upload_dataset(write_text_dataset(root / "train.jsonl", TRAIN_COUNTS, seed=1))
            job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="oip", hyperparameters=QUICK)
            assert client.wait_for_job(job.id, timeout=300).state == JobState.JOB_STATE_SUCCEEDED
        yield Served(server, job.model_id)
    finally:
        server.close()


@pytest.fixture(scope="module")
def stub(served: Served) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served.target) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def test_health_and_metadata_through_tritonclient(served: Served) -> None:
    seen = served.probe("health", "metadata")
    health, meta = seen["health"], seen["metadata"]
    assert health["live"] and health["ready"] and health["model_ready"] and health["model_ready_v1"]
    assert health["unknown_model_ready"] is False
    assert health["server_metadata"]["name"] == "tuneserve"
    assert set(health["server_metadata"]["extensions"]) == {"model_configuration", "model_repository"}
    labels = sorted(TRAIN_COUNTS)
    assert meta["metadata"] == {
        "name": served.model_id, "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": ["-1", "1"]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", str(len(labels))]},
                    {"name": "label", "datatype": "BYTES", "shape": ["-1", "1"]}],
    }
    config = meta["config"]["config"]
    assert config["max_batch_size"] == served.server.settings.limits.max_predict_batch
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": ["1"]}]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", [str(len(labels))]), ("label", "TYPE_STRING", ["1"])]


def test_raw_and_typed_infer_match_predict(served: Served) -> None:
    expected = served.predict(TEXTS)
    seen = served.probe("infer_raw", "infer_raw_flat", "infer_typed")
    labels = _labels(served)  # the order of the probability columns
    for name in ("infer_raw", "infer_typed"):
        outputs = seen[name]["outputs"]
        assert outputs["probabilities"]["shape"] == [len(TEXTS), len(labels)]
        probs = np.array(outputs["probabilities"]["data"]).reshape(len(TEXTS), len(labels))
        for row, scores in zip(probs, expected, strict=True):
            np.testing.assert_allclose(row, [scores[label] for label in labels], atol=1e-6)
        assert outputs["label"]["data"] == [max(s, key=s.__getitem__) for s in expected]
        assert seen[name]["model_version"] == "1"
    assert seen["infer_raw"]["id"] == "raw-1" and seen["infer_typed"]["id"] == "typed-1"
    assert seen["infer_raw"]["outputs"]["label"]["shape"] == [len(TEXTS), 1]  # the input's [N, 1]
    flat = seen["infer_raw_flat"]["outputs"]
    assert list(flat) == ["label"] and flat["label"]["shape"] == [len(TEXTS)]
    assert flat["label"]["data"] == seen["infer_raw"]["outputs"]["label"]["data"]
    assert seen["infer_typed"]["raw_output_contents"] == 0, "typed input must be answered with typed outputs"


def test_stream_infer_answers_every_request_and_survives_a_bad_one(served: Served) -> None:
    answers = served.probe("stream", texts=TEXTS[:4])["stream"]
    errors = [a["error"] for a in answers if "error" in a]
    assert errors == ["this model takes exactly one input, BYTES 'text' (UTF-8 texts); got inputs: 'txt'"]
    by_id = {a["id"]: a["outputs"]["label"]["data"][0] for a in answers if "error" not in a}
    expected = served.predict(TEXTS[:4])
    assert by_id == {f"s{i}": max(s, key=s.__getitem__) for i, s in enumerate(expected)}


def test_repository_index_load_and_unload(served: Served) -> None:
    index = served.probe("index")["index"]["all"]["models"]
    assert {"name": served.model_id, "version": "1", "state": "READY"} in index
    assert served.probe("unload")["unload"] == "unloaded"
    assert not served.loaded()
    assert served.probe("load")["load"] == "loaded"
    assert served.loaded()


def test_errors_reach_tritonclient_with_their_status(served: Served) -> None:
    seen = served.probe("wrong_input", "unknown_model")
    assert seen["wrong_input"]["error"] == {
        "status": "StatusCode.INVALID_ARGUMENT",
        "message": "this model takes exactly one input, BYTES 'text' (UTF-8 texts); got inputs: 'sentence'",
    }
    assert seen["unknown_model"]["error"] == {
        "status": "StatusCode.NOT_FOUND", "message": "model 'no-such-model' not found"}


def _labels(served: Served) -> list[str]:
    with Client(served.target) as client:
        return list(client.get_model(served.model_id).labels)


def _raw(*texts: bytes) -> bytes:
    return b"".join(len(t).to_bytes(4, "little") + t for t in texts)


def _request(served: Served) -> pb.ModelInferRequest:
    """A valid request: two texts as raw [2] BYTES."""
    request = pb.ModelInferRequest(model_name=served.model_id)
    request.inputs.add(name="text", datatype="BYTES", shape=[2])
    request.raw_input_contents.append(_raw(b"one", b"two"))
    return request


def _ask_classification(request: pb.ModelInferRequest) -> None:
    request.outputs.add(name="label").parameters["classification"].int64_param = 2


BAD = [
    # (name, change to a valid raw [2] request, code, reason)
    ("wrong input name", lambda r: setattr(r.inputs[0], "name", "txt"), grpc.StatusCode.INVALID_ARGUMENT,
     "this model takes exactly one input, BYTES 'text' (UTF-8 texts); got inputs: 'txt'"),
    ("two inputs", lambda r: r.inputs.add(name="extra", datatype="BYTES", shape=[2]), grpc.StatusCode.INVALID_ARGUMENT,
     "this model takes exactly one input, BYTES 'text' (UTF-8 texts); got inputs: 'text', 'extra'"),
    ("no inputs", lambda r: r.ClearField("inputs"), grpc.StatusCode.INVALID_ARGUMENT,
     "this model takes exactly one input, BYTES 'text' (UTF-8 texts); got inputs: none"),
    ("wrong datatype", lambda r: setattr(r.inputs[0], "datatype", "FP32"), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' has datatype 'FP32'; it must be BYTES (UTF-8 texts)"),
    ("wrong shape", lambda r: r.inputs[0].shape.extend([2]), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' has shape [2, 2]; it must be [N] or [N, 1] (one text per row)"),
    ("empty shape", lambda r: r.inputs[0].ClearField("shape"), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' has shape []; it must be [N] or [N, 1] (one text per row)"),
    ("zero texts", lambda r: r.inputs[0].shape.__setitem__(0, 0), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' has shape [0]: send at least one text"),
    ("raw and typed mixed", lambda r: r.inputs[0].contents.bytes_contents.append(b"one"),
     grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' has typed contents and the request has raw_input_contents: use one or the other"),
    ("raw count != shape", lambda r: r.inputs[0].shape.__setitem__(0, 3), grpc.StatusCode.INVALID_ARGUMENT,
     "raw_input_contents[0] (input 'text') holds 2 length-prefixed BYTES elements but the input's shape needs 3"),
    ("raw length past the end", lambda r: r.raw_input_contents.__setitem__(0, _raw(b"one") + b"\x09\0\0\0two"),
     grpc.StatusCode.INVALID_ARGUMENT,
     "raw_input_contents[0] (input 'text'): element 1 has a length prefix of 9 bytes but only 3 remain"),
    ("raw truncated prefix", lambda r: r.raw_input_contents.__setitem__(0, _raw(b"one") + b"\x03\0"),
     grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents[0] (input 'text') ends inside the 4-byte length of element 1"),
    ("two raw entries", lambda r: r.raw_input_contents.append(b""), grpc.StatusCode.INVALID_ARGUMENT,
     "raw_input_contents has 2 entries for 1 input: send one per input"),
    ("typed count != shape", lambda r: (r.ClearField("raw_input_contents"), r.inputs[0].contents.bytes_contents
                                        .append(b"one")), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' has shape [2] (2 elements) but 1 elements in contents.bytes_contents"),
    ("typed in the wrong field", lambda r: (r.ClearField("raw_input_contents"), r.inputs[0].contents.fp32_contents
                                            .extend([1.0, 2.0])), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'text' is BYTES: put its elements in contents.bytes_contents, not ['fp32_contents']"),
    ("not UTF-8", lambda r: r.raw_input_contents.__setitem__(0, _raw(b"one", b"\xff")), grpc.StatusCode.INVALID_ARGUMENT,
     "element 1 of input 'text' is not valid UTF-8 (invalid start byte)"),
    ("unknown output", lambda r: r.outputs.add(name="logits"), grpc.StatusCode.INVALID_ARGUMENT,
     "unknown outputs ['logits']: this model's outputs are ['probabilities', 'label']"),
    ("output twice", lambda r: (r.outputs.add(name="label"), r.outputs.add(name="label")),
     grpc.StatusCode.INVALID_ARGUMENT, "outputs ['label', 'label'] name an output more than once"),
    ("classification", _ask_classification, grpc.StatusCode.INVALID_ARGUMENT,
     "outputs ['label'] carry parameters (e.g. classification), which are not supported: request outputs by name only, "
     "of ['probabilities', 'label']"),
    ("unknown model", lambda r: setattr(r, "model_name", "no-such-model"), grpc.StatusCode.NOT_FOUND,
     "model 'no-such-model' not found"),
    ("no model name", lambda r: setattr(r, "model_name", ""), grpc.StatusCode.INVALID_ARGUMENT,
     "model name is required: a tuneserve model id (see `tuneserve models list`)"),
    ("unknown version", lambda r: setattr(r, "model_version", "7"), grpc.StatusCode.NOT_FOUND, "/7' not found"),
    ("version not a number", lambda r: setattr(r, "model_version", "latest"), grpc.StatusCode.INVALID_ARGUMENT,
     "model version 'latest' is not a version number: use 1, 2, ... or leave it empty for the latest READY version"),
]


@pytest.mark.parametrize(("change", "code", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_infer_requests_are_answered_with_the_reason(
    served: Served, stub: pb_grpc.GRPCInferenceServiceStub, change: Any, code: grpc.StatusCode, reason: str
) -> None:
    request = _request(served)
    change(request)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request, timeout=30)
    assert err.value.code() == code
    assert reason in err.value.details()


def test_the_valid_base_request_and_the_service_health(served: Served, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(_request(served), timeout=30)
    assert [o.name for o in response.outputs] == ["probabilities", "label"]
    assert len(response.raw_output_contents) == 2 and not response.outputs[0].HasField("contents")
    with grpc.insecure_channel(served.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING


def test_bad_repository_requests(served: Served, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    cases = [
        (stub.RepositoryIndex, pb.RepositoryIndexRequest(repository_name="models"), grpc.StatusCode.INVALID_ARGUMENT,
         "repository 'models' does not exist: tuneserve has one model repository; leave repository_name empty"),
        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="no-such-model"), grpc.StatusCode.NOT_FOUND,
         "model 'no-such-model' not found"),
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=""), grpc.StatusCode.INVALID_ARGUMENT,
         "model name is required"),
        (stub.ModelMetadata, pb.ModelMetadataRequest(name=served.model_id, version="0"),
         grpc.StatusCode.INVALID_ARGUMENT, "model version '0' is not a version number"),
        (stub.ModelConfig, pb.ModelConfigRequest(name="no-such-model"), grpc.StatusCode.NOT_FOUND,
         "model 'no-such-model' not found"),
    ]
    load = pb.RepositoryModelLoadRequest(model_name=served.model_id)
    load.parameters["config"].string_param = "{}"
    cases.append((stub.RepositoryModelLoad, load, grpc.StatusCode.INVALID_ARGUMENT,
                  "RepositoryModelLoad parameters ['config'] are not supported"))
    for call, request, code, reason in cases:
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=30)
        assert (err.value.code(), reason in err.value.details()) == (code, True), err.value.details()
