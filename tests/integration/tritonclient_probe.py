"""Drive a tuneserve server with the real tritonclient (gRPC) and print what it saw as JSON.

    python tests/integration/tritonclient_probe.py TARGET MODEL_ID STEP [STEP ...] [--texts JSON]

NOTE: this runs in its own process because tritonclient registers Triton's `grpc_service.proto` (package `inference`)
in protobuf's default descriptor pool, where tuneserve's own `inference` stubs (imported by the server) already are:
protobuf refuses the second file ("duplicate symbol 'inference.DataType'"). Each step records its result, or the
`InferenceServerException` it raised as {"error": {"status": ..., "message": ...}}.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

Step = Callable[[tc.InferenceServerClient, str, list[str], str], Any]


def health(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "model_ready_v1": client.is_model_ready(model, "1"),
        "unknown_model_ready": client.is_model_ready("no-such-model"),
        "server_metadata": client.get_server_metadata(as_json=True),
    }


def metadata(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    return {
        "metadata": client.get_model_metadata(model, as_json=True),
        "config": client.get_model_config(model, as_json=True),
    }


def infer_raw(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    """Triton's batched layout: [N, 1] BYTES, every output."""
    text = tc.InferInput("text", [len(texts), 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    result = client.infer(model, [text], request_id="raw-1")
    return _result(result)


def infer_raw_flat(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    """[N] BYTES, only the label output requested, version 1 named."""
    text = tc.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    result = client.infer(model, [text], model_version="1", outputs=[tc.InferRequestedOutput("label")])
    return _result(result)


def infer_typed(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    """Typed contents (bytes_contents), which tritonclient's InferInput never sends: built from Triton's own messages."""
    request = service_pb2.ModelInferRequest(model_name=model, id="typed-1")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(t.encode() for t in texts)
    with grpc.insecure_channel(target) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    # NOTE: InferResult.as_numpy reads typed outputs only from bytes_contents: read the typed fields here
    outputs = {
        o.name: {
            "datatype": o.datatype,
            "shape": list(o.shape),
            "data": list(o.contents.fp32_contents) or [v.decode() for v in o.contents.bytes_contents],
        }
        for o in response.outputs
    }
    return {"id": response.id, "model_version": response.model_version, "outputs": outputs,
            "raw_output_contents": len(response.raw_output_contents)}


def stream(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    """One stream: a request per text, with a bad one (wrong input name) in the middle that must not end it."""
    answers: list[dict[str, Any]] = []
    done = threading.Event()

    def callback(result: tc.InferResult | None, error: InferenceServerException | None) -> None:
        answers.append({"error": error.message()} if error else _result(result))
        if len(answers) == len(texts) + 1:
            done.set()

    client.start_stream(callback)
    try:
        for i, t in enumerate(texts):
            text = tc.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array([t.encode()], dtype=np.object_))
            client.async_stream_infer(model, [text], request_id=f"s{i}")
            if i == len(texts) // 2:
                bad = tc.InferInput("txt", [1], "BYTES")
                bad.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
                client.async_stream_infer(model, [bad], request_id="bad")
        done.wait(60)
    finally:
        client.stop_stream()
    return answers


def index(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    return {
        "all": client.get_model_repository_index(as_json=True),
    }


def load(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    client.load_model(model)
    return "loaded"


def unload(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    client.unload_model(model)
    return "unloaded"


def wrong_input(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    text = tc.InferInput("sentence", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    return client.infer(model, [text])


def unknown_model(client: tc.InferenceServerClient, model: str, texts: list[str], target: str) -> Any:
    return client.get_model_metadata("no-such-model")


def _result(result: tc.InferResult) -> dict[str, Any]:
    response = result.get_response()
    outputs = {}
    for output in response.outputs:
        array = result.as_numpy(output.name)
        outputs[output.name] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "data": [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()],
        }
    return {"id": response.id, "model_version": response.model_version, "outputs": outputs}


STEPS: dict[str, Step] = {
    f.__name__: f for f in (health, metadata, infer_raw, infer_raw_flat, infer_typed, stream, index, load, unload,
                            wrong_input, unknown_model)
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("model")
    parser.add_argument("steps", nargs="+", choices=sorted(STEPS))
    parser.add_argument("--texts", default='["a first text", "and a second one"]')
    args = parser.parse_args()
    texts = json.loads(args.texts)
    results: dict[str, Any] = {}
    with tc.InferenceServerClient(args.target) as client:
        for name in args.steps:
            try:
                results[name] = STEPS[name](client, args.model, texts, args.target)
            except InferenceServerException as exc:
                results[name] = {"error": {"status": exc.status(), "message": exc.message()}}
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
