"""Drive a tuneserve server with the real tritonclient (gRPC) and print what it saw as JSON.

    python tests/integration/tritonclient_probe.py TARGET MODEL_ID STEP [STEP ...] [--texts JSON] [--pairs JSON]

`--pairs` (a pair model's second texts, one per text) adds the BYTES input `text_pair` beside `text` to every infer.

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

Triton = tc.InferenceServerClient
Step = Callable[[Triton, str, list[str], list[str], str], Any]


def health(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "model_ready_v1": client.is_model_ready(model, "1"),
        "unknown_model_ready": client.is_model_ready("no-such-model"),
        "server_metadata": client.get_server_metadata(as_json=True),
    }


def metadata(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    return {
        "metadata": client.get_model_metadata(model, as_json=True),
        "config": client.get_model_config(model, as_json=True),
    }


def infer_raw(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    """Triton's batched layout: [N, 1] BYTES, every output."""
    result = client.infer(model, _inputs(texts, pairs, batched=True), request_id="raw-1")
    return _result(result)


def infer_raw_flat(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    """[N] BYTES, only the last output requested (label, labels or value), version 1 named."""
    last = client.get_model_metadata(model, as_json=True)["outputs"][-1]["name"]
    result = client.infer(
        model, _inputs(texts, pairs, batched=False), model_version="1", outputs=[tc.InferRequestedOutput(last)]
    )
    return _result(result)


def infer_typed(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    """Typed contents (bytes_contents), which tritonclient's InferInput never sends: built from Triton's own messages."""
    request = service_pb2.ModelInferRequest(model_name=model, id="typed-1")
    for name, column in (("text", texts), ("text_pair", pairs)):
        if column:
            tensor = request.inputs.add(name=name, datatype="BYTES", shape=[len(column)])
            tensor.contents.bytes_contents.extend(t.encode() for t in column)
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


def stream(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
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
            client.async_stream_infer(model, _inputs([t], pairs[i:i + 1], batched=False), request_id=f"s{i}")
            if i == len(texts) // 2:
                bad = tc.InferInput("txt", [1], "BYTES")
                bad.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
                client.async_stream_infer(model, [bad], request_id="bad")
        done.wait(60)
    finally:
        client.stop_stream()
    return answers


def index(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    return {
        "all": client.get_model_repository_index(as_json=True),
    }


def load(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    client.load_model(model)
    return "loaded"


def unload(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    client.unload_model(model)
    return "unloaded"


def wrong_input(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    text = tc.InferInput("sentence", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    return client.infer(model, [text])


def unknown_model(client: Triton, model: str, texts: list[str], pairs: list[str], target: str) -> Any:
    return client.get_model_metadata("no-such-model")


def _inputs(texts: list[str], pairs: list[str], *, batched: bool) -> list[tc.InferInput]:
    """BYTES `text` (and `text_pair` when `pairs`), [N, 1] when `batched` (Triton's layout), else [N]."""
    inputs = []
    for name, column in (("text", texts), ("text_pair", pairs)):
        if not column:
            continue
        shape = [len(column), 1] if batched else [len(column)]
        tensor = tc.InferInput(name, shape, "BYTES")
        tensor.set_data_from_numpy(np.array([t.encode() for t in column], dtype=np.object_).reshape(shape))
        inputs.append(tensor)
    return inputs


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
    parser.add_argument("--pairs", default="[]")
    args = parser.parse_args()
    texts, pairs = json.loads(args.texts), json.loads(args.pairs)
    results: dict[str, Any] = {}
    with tc.InferenceServerClient(args.target) as client:
        for name in args.steps:
            try:
                results[name] = STEPS[name](client, args.model, texts, pairs, args.target)
            except InferenceServerException as exc:
                results[name] = {"error": {"status": exc.status(), "message": exc.message()}}
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
