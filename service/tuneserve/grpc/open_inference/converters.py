"""Open Inference Protocol messages <-> typed values, at the edge only: `to_types` reads (and validates) a request,
`from_types` builds a response.

A model is a tuneserve model id and a version a version number as a string ("" = the latest READY version). Text
models take one BYTES input `text` (UTF-8 texts), image models one BYTES input `image` (encoded JPEG/PNG/WEBP/BMP
files), of shape [N] or [N, 1]; they answer FP32 `probabilities` [N, C] and BYTES `label` (the input's shape, so a
Triton-style [N, 1] batch gets [N, 1] labels). In raw contents each BYTES element is a 4-byte little-endian length
followed by its bytes. Anything else is INVALID_ARGUMENT with the reason.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tuneserve.core.serving.resolver import VersionRef
from tuneserve.errors import InvalidArgument
from tuneserve.settings import LimitSettings
from tuneserve.types import ModelRecord, ModelVersionRecord, VersionState
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import model_config_pb2 as config_pb

TEXT = "text"
IMAGE = "image"
INPUTS = {"text": TEXT, "image": IMAGE}          # model modality -> the input it takes
_INPUT_CONTENTS = {TEXT: "UTF-8 texts", IMAGE: "encoded JPEG/PNG/WEBP/BMP files"}
PROBABILITIES = "probabilities"
LABEL = "label"
OUTPUTS = (PROBABILITIES, LABEL)
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
_LENGTH = struct.Struct("<I")
_TYPED_FIELDS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                 "fp32_contents", "fp64_contents")


@dataclass(frozen=True)
class InferRequest:
    ref: VersionRef
    id: str
    inputs: list[str] | list[bytes]   # texts for a text model, encoded images for an image model
    shape: tuple[int, ...]        # of the input: (N,) or (N, 1)
    outputs: tuple[str, ...]      # in the order to answer them
    raw: bool                     # the input came as raw_input_contents: answer raw_output_contents


@dataclass(frozen=True)
class InferResult:
    request: InferRequest
    model_id: str
    version: int
    class_labels: Sequence[str]
    probabilities: np.ndarray     # [N, C] float32


class VersionRefConverter:
    @staticmethod
    def to_types(name: str, version: str) -> VersionRef:
        if not name:
            raise InvalidArgument("model name is required: a tuneserve model id (see `tuneserve models list`)")
        if version == "":
            return VersionRef(name, 0)
        if not version.isdigit() or int(version) < 1:
            raise InvalidArgument(
                f"model version {version!r} is not a version number: use 1, 2, ... or leave it empty for the latest "
                "READY version"
            )
        return VersionRef(name, int(version))


class InferRequestConverter:
    @staticmethod
    def to_types(request: pb.ModelInferRequest, limits: LimitSettings, modality: str) -> InferRequest:
        """`modality` is the named model's: it decides which input the request must carry."""
        ref = VersionRefConverter.to_types(request.model_name, request.model_version)
        name = INPUTS[modality]
        tensor = _input(request.inputs, name)
        shape = _shape(tensor, name, limits)
        raw = len(request.raw_input_contents) > 0
        elements = _raw_elements(request, tensor, name, shape[0]) if raw else _typed_elements(tensor, name, shape[0])
        inputs: list[str] | list[bytes]
        if name == IMAGE:
            inputs = [_image(element, i) for i, element in enumerate(elements)]
        else:
            inputs = [_text(element, i, limits) for i, element in enumerate(elements)]
        return InferRequest(ref, request.id, inputs, shape, _requested_outputs(request.outputs), raw)


class InferResponseConverter:
    @staticmethod
    def from_types(result: InferResult) -> pb.ModelInferResponse:
        request = result.request
        probs = np.asarray(result.probabilities, dtype=np.float32)
        labels = [result.class_labels[i].encode() for i in np.argmax(probs, axis=1)]
        response = pb.ModelInferResponse(model_name=result.model_id, model_version=str(result.version), id=request.id)
        for name in request.outputs:
            tensor = response.outputs.add(name=name)
            if name == PROBABILITIES:
                tensor.datatype, tensor.shape[:] = "FP32", list(probs.shape)
                if request.raw:
                    response.raw_output_contents.append(probs.astype("<f4", copy=False).tobytes())
                else:
                    tensor.contents.fp32_contents.extend(probs.ravel().tolist())
            else:
                tensor.datatype, tensor.shape[:] = "BYTES", list(request.shape)
                if request.raw:
                    response.raw_output_contents.append(encode_bytes(labels))
                else:
                    tensor.contents.bytes_contents.extend(labels)
        return response


class ModelMetadataConverter:
    @staticmethod
    def from_types(model: ModelRecord, versions: Iterable[int]) -> pb.ModelMetadataResponse:
        # NOTE: shapes as Triton reports a batching model's (the batch dimension first, -1), because perf_analyzer
        # takes them from here and drops that first dimension: a bare [-1] for `text` would leave it no shape at all.
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.id,
            versions=[str(v) for v in versions],
            platform=PLATFORM,
            inputs=[tensor(name=INPUTS[model.modality], datatype="BYTES", shape=[-1, 1])],
            outputs=[
                tensor(name=PROBABILITIES, datatype="FP32", shape=[-1, len(model.labels)]),
                tensor(name=LABEL, datatype="BYTES", shape=[-1, 1]),
            ],
        )


class ModelConfigConverter:
    @staticmethod
    def from_types(model: ModelRecord, max_batch_size: int) -> pb.ModelConfigResponse:
        # NOTE: Triton's batching convention: dims leave out the batch dimension, so clients such as perf_analyzer
        # send `text` as [batch, 1] (accepted beside [N]) and read `label` as [batch, 1].
        return pb.ModelConfigResponse(config=config_pb.ModelConfig(
            name=model.id,
            platform=PLATFORM,
            backend=BACKEND,
            max_batch_size=max_batch_size,
            input=[config_pb.ModelInput(name=INPUTS[model.modality], data_type=config_pb.TYPE_STRING, dims=[1])],
            output=[
                config_pb.ModelOutput(name=PROBABILITIES, data_type=config_pb.TYPE_FP32, dims=[len(model.labels)]),
                config_pb.ModelOutput(name=LABEL, data_type=config_pb.TYPE_STRING, dims=[1]),
            ],
        ))


class RepositoryIndexConverter:
    @staticmethod
    def from_types(models: Iterable[ModelRecord], ready_only: bool) -> pb.RepositoryIndexResponse:
        index = pb.RepositoryIndexResponse()
        for model in models:
            for version in sorted(model.versions, key=lambda v: v.version):
                if version.state is VersionState.READY:
                    index.models.add(name=model.id, version=str(version.version), state="READY")
                elif not ready_only:
                    index.models.add(name=model.id, version=str(version.version), state="UNAVAILABLE",
                                     reason=_not_ready_reason(version))
        return index


class RepositoryParametersConverter:
    @staticmethod
    def to_types(repository_name: str, model_name: str, parameters: Mapping[str, object], rpc: str,
                 allowed: frozenset[str] = frozenset()) -> str:
        """The model id a RepositoryModelLoad/Unload names, after checking what tuneserve cannot honour."""
        check_repository(repository_name)
        unsupported = sorted(set(parameters) - allowed)
        if unsupported:
            raise InvalidArgument(
                f"{rpc} parameters {unsupported} are not supported: models come from FineTune, so there is no config "
                "or file to override; send none"
            )
        return VersionRefConverter.to_types(model_name, "").model_id


def check_repository(repository_name: str) -> None:
    if repository_name:
        raise InvalidArgument(
            f"repository {repository_name!r} does not exist: tuneserve has one model repository; leave "
            "repository_name empty"
        )


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


def _input(inputs: Sequence[pb.ModelInferRequest.InferInputTensor],
           name: str) -> pb.ModelInferRequest.InferInputTensor:
    names = [t.name for t in inputs]
    if names != [name]:
        found = ", ".join(repr(n) for n in names) or "none"
        raise InvalidArgument(
            f"this model takes exactly one input, BYTES {name!r} ({_INPUT_CONTENTS[name]}); got inputs: {found}"
        )
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        raise InvalidArgument(
            f"input {name!r} has datatype {tensor.datatype!r}; it must be BYTES ({_INPUT_CONTENTS[name]})"
        )
    return tensor


def _shape(tensor: pb.ModelInferRequest.InferInputTensor, name: str, limits: LimitSettings) -> tuple[int, ...]:
    shape = tuple(tensor.shape)
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


def _raw_elements(request: pb.ModelInferRequest, tensor: pb.ModelInferRequest.InferInputTensor, name: str,
                  count: int) -> list[bytes]:
    if tensor.HasField("contents"):
        raise InvalidArgument(
            f"input {name!r} has typed contents and the request has raw_input_contents: use one or the other"
        )
    if len(request.raw_input_contents) != 1:
        raise InvalidArgument(
            f"raw_input_contents has {len(request.raw_input_contents)} entries for 1 input: send one per input"
        )
    return decode_bytes(request.raw_input_contents[0], count, f"raw_input_contents[0] (input {name!r})")


def _typed_elements(tensor: pb.ModelInferRequest.InferInputTensor, name: str, count: int) -> list[bytes]:
    contents = tensor.contents
    misplaced = [field for field in _TYPED_FIELDS if len(getattr(contents, field))]
    if misplaced:
        raise InvalidArgument(f"input {name!r} is BYTES: put its elements in contents.bytes_contents, not {misplaced}")
    if len(contents.bytes_contents) != count:
        raise InvalidArgument(
            f"input {name!r} has shape {list(tensor.shape)} ({count} elements) but {len(contents.bytes_contents)} "
            "elements in contents.bytes_contents"
        )
    return list(contents.bytes_contents)


def _image(element: bytes, index: int) -> bytes:
    # NOTE: only emptiness here; format, pixel limit and corruption are checked where the image is decoded
    # (the runtime's encode, through engines.imaging.decode_image)
    if not element:
        raise InvalidArgument(f"element {index} of input {IMAGE!r} is empty (0 bytes); send an encoded image file")
    return element


def _text(element: bytes, index: int, limits: LimitSettings) -> str:
    try:
        text = element.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"element {index} of input {TEXT!r} is not valid UTF-8 ({exc.reason})") from None
    if not text or text.isspace():
        raise InvalidArgument(
            f"element {index} of input {TEXT!r} is empty or only whitespace; send the text to classify"
        )
    if len(text) > limits.max_text_chars:
        raise InvalidArgument(
            f"element {index} of input {TEXT!r} has {len(text)} characters, more than {limits.max_text_chars} "
            "(limit max_text_chars)"
        )
    return text


def _requested_outputs(outputs: Sequence[pb.ModelInferRequest.InferRequestedOutputTensor]) -> tuple[str, ...]:
    names = tuple(o.name for o in outputs)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise InvalidArgument(f"unknown outputs {unknown}: this model's outputs are {list(OUTPUTS)}")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"outputs {list(names)} name an output more than once")
    with_parameters = [o.name for o in outputs if o.parameters]
    if with_parameters:
        raise InvalidArgument(
            f"outputs {with_parameters} carry parameters (e.g. classification), which are not supported: request "
            f"{LABEL!r} for the top class or {PROBABILITIES!r} for every class"
        )
    return names or OUTPUTS


def _not_ready_reason(version: ModelVersionRecord) -> str:
    if version.state is VersionState.TRAINING:
        return f"still training (job {version.job_id})"
    return f"training failed (job {version.job_id})"
