"""Reading a request's BYTES input tensors and writing output tensors, in typed contents or raw contents (each BYTES
element a 4-byte little-endian length followed by its bytes; FP32 little-endian)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import numpy as np

from tuneserve.errors import InvalidArgument
from tuneserve.settings import LimitSettings
from tuneserve.tasks import OutputTensor
from tuneserve_client.proto.inference import grpc_service_pb2 as pb

_LENGTH = struct.Struct("<I")
_TYPED_FIELDS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                 "fp32_contents", "fp64_contents")

InputTensor: TypeAlias = pb.ModelInferRequest.InferInputTensor


def shape_of(tensor: InputTensor, limits: LimitSettings) -> tuple[int, ...]:
    """The input's shape, [N] or [N, 1] with 1 <= N <= max_predict_batch."""
    name, shape = tensor.name, tuple(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
        raise InvalidArgument(f"input {name!r} has shape {list(shape)}; it must be [N] or [N, 1] (one {name} per row)")
    if shape[0] == 0:
        raise InvalidArgument(f"input {name!r} has shape {list(shape)}: send at least one {name}")
    if shape[0] > limits.max_predict_batch:
        raise InvalidArgument(
            f"input {name!r} holds {shape[0]} {name}s, more than {limits.max_predict_batch} "
            "(limit max_predict_batch); split the batch"
        )
    return shape


def raw_elements(request: pb.ModelInferRequest, position: int, count: int) -> list[bytes]:
    """The BYTES elements of the request's input at `position`, from its raw contents (one entry per input)."""
    tensor = request.inputs[position]
    if tensor.HasField("contents"):
        raise InvalidArgument(
            f"input {tensor.name!r} has typed contents and the request has raw_input_contents: use one or the other"
        )
    inputs = len(request.inputs)
    if len(request.raw_input_contents) != inputs:
        raise InvalidArgument(
            f"raw_input_contents has {len(request.raw_input_contents)} entries for {inputs} "
            f"input{'s' if inputs > 1 else ''}: send one per input"
        )
    return decode_bytes(
        request.raw_input_contents[position], count, f"raw_input_contents[{position}] (input {tensor.name!r})"
    )


def typed_elements(tensor: InputTensor, count: int) -> list[bytes]:
    name, contents = tensor.name, tensor.contents
    misplaced = [field for field in _TYPED_FIELDS if len(getattr(contents, field))]
    if misplaced:
        raise InvalidArgument(f"input {name!r} is BYTES: put its elements in contents.bytes_contents, not {misplaced}")
    if len(contents.bytes_contents) != count:
        raise InvalidArgument(
            f"input {name!r} has shape {list(tensor.shape)} ({count} elements) but {len(contents.bytes_contents)} "
            "elements in contents.bytes_contents"
        )
    return list(contents.bytes_contents)


def add_output(
    response: pb.ModelInferResponse, output: OutputTensor, shape: Sequence[int], raw: bool
) -> None:
    """Append `output` to the response with `shape`, as raw contents when `raw`, else typed."""
    tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=list(shape))
    if output.datatype == "BYTES":
        elements = [bytes(e) for e in output.data]
        if raw:
            response.raw_output_contents.append(encode_bytes(elements))
        else:
            tensor.contents.bytes_contents.extend(elements)
        return
    values = np.asarray(output.data, dtype=np.float32)
    if raw:
        response.raw_output_contents.append(values.astype("<f4", copy=False).tobytes())
    else:
        tensor.contents.fp32_contents.extend(values.ravel().tolist())


def encode_bytes(elements: Iterable[bytes]) -> bytes:
    """BYTES elements as raw contents: each a 4-byte little-endian length, then the bytes."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def decode_bytes(raw: bytes, count: int, where: str) -> list[bytes]:
    """The `count` BYTES elements of `raw`; InvalidArgument when the lengths do not add up to exactly that."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + _LENGTH.size > len(raw):
            raise InvalidArgument(f"{where} ends inside the 4-byte length of element {len(elements)}")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise InvalidArgument(
                f"{where}: element {len(elements)} has a length prefix of {length} bytes but only "
                f"{len(raw) - offset} remain"
            )
        elements.append(raw[offset:offset + length])
        offset += length
    if len(elements) != count:
        raise InvalidArgument(
            f"{where} holds {len(elements)} length-prefixed BYTES elements but the input's shape needs {count}"
        )
    return elements
