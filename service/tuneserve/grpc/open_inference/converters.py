"""Open Inference Protocol messages <-> typed values, at the edge only: `to_types` reads (and validates) a request,
`from_types` builds a response.

A model is a tuneserve model id and a version a version number as a string ("" = the latest READY version). Text
models take one BYTES input `text` (UTF-8 texts), pair models a second one, `text_pair`, shaped like `text` (the
second text of each pair), image models one BYTES input `image` (encoded JPEG/PNG/WEBP/BMP files), of shape [N] or
[N, 1]. What a model answers is its task's (`Task.open_inference`, named by `Task.output_names`): single-label
classification FP32 `probabilities` [N, C] and BYTES `label`; multi-label FP32 `probabilities` [N, L] and BYTES
`labels` (each a JSON list of the labels over their threshold); regression FP32 `value` [N, 1]. A BYTES output of one
element per row takes the input's shape, so a Triton-style [N, 1] batch gets [N, 1] labels and an [N] batch [N].
In raw contents each BYTES element is a 4-byte little-endian length followed by its bytes. Anything else is
INVALID_ARGUMENT with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tuneserve.core.serving.requests import Inputs
from tuneserve.core.serving.resolver import VersionRef
from tuneserve.errors import InvalidArgument
from tuneserve.grpc.open_inference.tensors import (
    InputTensor,
    add_output,
    decode_bytes,
    encode_bytes,
    raw_elements,
    shape_of,
    typed_elements,
)
from tuneserve.settings import LimitSettings
from tuneserve.tasks import OutputTensor, get_task
from tuneserve.types import ModelRecord, ModelVersionRecord, VersionState
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import model_config_pb2 as config_pb

__all__ = [
    "IMAGE", "TEXT", "TEXT_PAIR", "InferRequest", "InferRequestConverter", "InferResponseConverter", "InferResult",
    "ModelConfigConverter", "ModelMetadataConverter", "RepositoryIndexConverter", "RepositoryParametersConverter",
    "VersionRefConverter", "check_repository", "decode_bytes", "encode_bytes", "input_names", "output_specs",
]

TEXT = "text"
TEXT_PAIR = "text_pair"
IMAGE = "image"
INPUTS = {"text": TEXT, "image": IMAGE}          # model modality -> the input it takes
_INPUT_CONTENTS = {TEXT: "UTF-8 texts", IMAGE: "encoded JPEG/PNG/WEBP/BMP files"}
PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
_CONFIG_TYPES = {"FP32": config_pb.TYPE_FP32, "BYTES": config_pb.TYPE_STRING}


@dataclass(frozen=True)
class InferRequest:
    ref: VersionRef
    id: str
    inputs: Inputs                # texts, (text, text_pair) tuples for a pair model, or encoded images
    shape: tuple[int, ...]        # of the input(s): (N,) or (N, 1)
    outputs: tuple[str, ...]      # in the order to answer them
    raw: bool                     # the input came as raw_input_contents: answer raw_output_contents


@dataclass(frozen=True)
class InferResult:
    request: InferRequest
    model_id: str
    version: int
    outputs: list[OutputTensor]   # the task's output tensors of the batch (`Task.open_inference`)


def input_names(model: ModelRecord) -> list[str]:
    """The BYTES inputs `model` takes, in order."""
    if model.modality == "text" and model.text_pairs:
        return [TEXT, TEXT_PAIR]
    return [INPUTS[model.modality]]


def output_specs(model: ModelRecord) -> list[tuple[str, str, int]]:
    """(name, datatype, width) of each output `model` answers, from its task."""
    return [
        (name, datatype, len(model.labels) if width < 0 else width)
        for name, datatype, width in get_task(model.task).output_names()
    ]


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
    def to_types(request: pb.ModelInferRequest, limits: LimitSettings, model: ModelRecord) -> InferRequest:
        """`model` is the named model: its modality and text_pairs decide which inputs the request must carry, its
        task which outputs it may ask for."""
        ref = VersionRefConverter.to_types(request.model_name, request.model_version)
        names = input_names(model)
        positions = _inputs(request.inputs, names)
        shape = shape_of(request.inputs[positions[0]], limits)
        raw = len(request.raw_input_contents) > 0
        columns = []
        for name, position in zip(names, positions, strict=True):
            tensor = request.inputs[position]
            if tuple(tensor.shape) != shape:
                raise InvalidArgument(
                    f"input {name!r} has shape {list(tensor.shape)}; it must have the shape of input {names[0]!r}, "
                    f"{list(shape)} (one {name} per {names[0]})"
                )
            elements = raw_elements(request, position, shape[0]) if raw else typed_elements(tensor, shape[0])
            columns.append(elements)
        inputs: Inputs
        if names == [IMAGE]:
            inputs = [_image(element, i) for i, element in enumerate(columns[0])]
        else:
            texts = [[_text(element, i, name, limits) for i, element in enumerate(column)]
                     for name, column in zip(names, columns, strict=True)]
            inputs = list(zip(texts[0], texts[1], strict=True)) if len(texts) == 2 else texts[0]
        outputs = _requested_outputs(request.outputs, [name for name, _, _ in output_specs(model)])
        return InferRequest(ref, request.id, inputs, shape, outputs, raw)


class InferResponseConverter:
    @staticmethod
    def from_types(result: InferResult) -> pb.ModelInferResponse:
        request = result.request
        by_name = {output.name: output for output in result.outputs}
        response = pb.ModelInferResponse(model_name=result.model_id, model_version=str(result.version), id=request.id)
        for name in request.outputs:
            output = by_name[name]
            per_row = output.datatype == "BYTES" and output.shape[1:] == [1]
            add_output(response, output, request.shape if per_row else output.shape, request.raw)
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
            inputs=[tensor(name=name, datatype="BYTES", shape=[-1, 1]) for name in input_names(model)],
            outputs=[
                tensor(name=name, datatype=datatype, shape=[-1, width]) for name, datatype, width in output_specs(model)
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
            input=[config_pb.ModelInput(name=n, data_type=config_pb.TYPE_STRING, dims=[1]) for n in input_names(model)],
            output=[
                config_pb.ModelOutput(name=name, data_type=_CONFIG_TYPES[datatype], dims=[width])
                for name, datatype, width in output_specs(model)
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


def _inputs(inputs: Sequence[InputTensor], names: list[str]) -> list[int]:
    """The position in the request of each of `names`, the model's inputs: exactly those, BYTES."""
    got = [t.name for t in inputs]
    if sorted(got) != sorted(names):
        found = ", ".join(repr(n) for n in got) or "none"
        contents = _INPUT_CONTENTS[INPUTS.get(names[0], TEXT)]
        if len(names) == 1:
            wanted = f"exactly one input, BYTES {names[0]!r} ({contents})"
        else:
            wanted = f"two inputs, BYTES {names[0]!r} and {names[1]!r} ({contents}: each pair's first and second text)"
        raise InvalidArgument(f"this model takes {wanted}; got inputs: {found}")
    for tensor in inputs:
        if tensor.datatype != "BYTES":
            contents = _INPUT_CONTENTS[IMAGE if tensor.name == IMAGE else TEXT]
            raise InvalidArgument(
                f"input {tensor.name!r} has datatype {tensor.datatype!r}; it must be BYTES ({contents})"
            )
    return [got.index(name) for name in names]


def _image(element: bytes, index: int) -> bytes:
    # NOTE: only emptiness here; format, pixel limit and corruption are checked where the image is decoded
    # (the runtime's encode, through engines.imaging.decode_image)
    if not element:
        raise InvalidArgument(f"element {index} of input {IMAGE!r} is empty (0 bytes); send an encoded image file")
    return element


def _text(element: bytes, index: int, name: str, limits: LimitSettings) -> str:
    try:
        text = element.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"element {index} of input {name!r} is not valid UTF-8 ({exc.reason})") from None
    if not text or text.isspace():
        raise InvalidArgument(
            f"element {index} of input {name!r} is empty or only whitespace; send the text to classify"
        )
    if len(text) > limits.max_text_chars:
        raise InvalidArgument(
            f"element {index} of input {name!r} has {len(text)} characters, more than {limits.max_text_chars} "
            "(limit max_text_chars)"
        )
    return text


def _requested_outputs(
    outputs: Sequence[pb.ModelInferRequest.InferRequestedOutputTensor], known: list[str]
) -> tuple[str, ...]:
    names = tuple(o.name for o in outputs)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidArgument(f"unknown outputs {unknown}: this model's outputs are {known}")
    if len(set(names)) != len(names):
        raise InvalidArgument(f"outputs {list(names)} name an output more than once")
    with_parameters = [o.name for o in outputs if o.parameters]
    if with_parameters:
        raise InvalidArgument(
            f"outputs {with_parameters} carry parameters (e.g. classification), which are not supported: request "
            f"outputs by name only, of {known}"
        )
    return names or tuple(known)


def _not_ready_reason(version: ModelVersionRecord) -> str:
    if version.state is VersionState.TRAINING:
        return f"still training (job {version.job_id})"
    return f"training failed (job {version.job_id})"
