"""Drive an image model on a tuneserve server with the real tritonclient (gRPC) and print what it saw as JSON.

    python tests/integration/tritonclient_image_probe.py TARGET MODEL_ID IMAGE_FILE [IMAGE_FILE ...]

Runs in its own process for the reason `tritonclient_probe.py` gives (Triton's `inference` protos in protobuf's default
pool). Steps: metadata and config, [N, 1] raw BYTES `image`, [N] with the label output only, and a `text` input sent
to the image model (an error), each recorded as its result or {"error": {"status", "message"}}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def _outputs(result: tc.InferResult) -> dict[str, Any]:
    outputs = {}
    for output in result.get_response().outputs:
        array = result.as_numpy(output.name)
        values = [v.decode() if isinstance(v, bytes) else v for v in array.ravel().tolist()]
        outputs[output.name] = {"datatype": output.datatype, "shape": list(output.shape), "data": values}
    return outputs


def main() -> int:
    target, model, *files = sys.argv[1:]
    images = [Path(f).read_bytes() for f in files]
    steps: dict[str, Callable[[tc.InferenceServerClient], Any]] = {}

    def metadata(client: tc.InferenceServerClient) -> Any:
        return {"metadata": client.get_model_metadata(model, as_json=True),
                "config": client.get_model_config(model, as_json=True)}

    def infer_batched(client: tc.InferenceServerClient) -> Any:
        tensor = tc.InferInput("image", [len(images), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b] for b in images], dtype=np.object_))
        return _outputs(client.infer(model, [tensor]))

    def infer_flat_label(client: tc.InferenceServerClient) -> Any:
        tensor = tc.InferInput("image", [len(images)], "BYTES")
        tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
        return _outputs(client.infer(model, [tensor], outputs=[tc.InferRequestedOutput("label")]))

    def text_input(client: tc.InferenceServerClient) -> Any:
        tensor = tc.InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"a text"], dtype=np.object_))
        return _outputs(client.infer(model, [tensor]))

    def corrupt_image(client: tc.InferenceServerClient) -> Any:
        tensor = tc.InferInput("image", [2], "BYTES")
        tensor.set_data_from_numpy(np.array([images[0], images[0][:40]], dtype=np.object_))
        return _outputs(client.infer(model, [tensor]))

    steps.update(metadata=metadata, infer_batched=infer_batched, infer_flat_label=infer_flat_label,
                 text_input=text_input, corrupt_image=corrupt_image)
    results: dict[str, Any] = {}
    with tc.InferenceServerClient(target) as client:
        for name, step in steps.items():
            try:
                results[name] = step(client)
            except InferenceServerException as exc:
                results[name] = {"error": {"status": exc.status(), "message": exc.message()}}
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
