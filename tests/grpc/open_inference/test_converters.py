"""Open Inference Protocol requests read at the edge: what a text model's input may not hold."""

from __future__ import annotations

import pytest

from tuneserve.errors import InvalidArgument
from tuneserve.grpc.open_inference.converters import InferRequestConverter
from tuneserve.settings import LimitSettings
from tuneserve.types import ModelRecord
from tuneserve_client.proto.inference import grpc_service_pb2 as pb

MODEL = ModelRecord("m", "m", "text", "tiny", ["a", "b"], 0.0)


@pytest.mark.parametrize("element", [b"", b" \n\t"])
def test_an_empty_text_is_refused_as_predict_refuses_it(element: bytes) -> None:
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"a text", element])
    with pytest.raises(InvalidArgument, match="element 1 of input 'text' is empty or only whitespace"):
        InferRequestConverter.to_types(request, LimitSettings(), MODEL)
