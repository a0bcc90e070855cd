"""The Open Inference Protocol (KServe v2 / Triton gRPC, package `inference`) on tuneserve's port, so tritonclient,
perf_analyzer and other v2 clients work unmodified. Each method converts the request (`converters`), calls the
same core as tuneserve.v1 (one `resolve` for the version, with the same hot-swap rule as Predict; one batcher per model
version for every protocol) and converts back.
Errors are mapped to status codes by `StatusInterceptor`, never here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from tuneserve import __version__
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.serving.inference import InferenceService
from tuneserve.core.serving.streams import answer_concurrently
from tuneserve.errors import FailedPrecondition, NotFound
from tuneserve.grpc.interceptors import error_status
from tuneserve.grpc.open_inference.converters import (
    InferRequestConverter,
    InferResponseConverter,
    InferResult,
    ModelConfigConverter,
    ModelMetadataConverter,
    RepositoryIndexConverter,
    RepositoryParametersConverter,
    VersionRefConverter,
    check_repository,
)
from tuneserve.settings import LimitSettings
from tuneserve.types import ModelRecord, Page, VersionState
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
EXTENSIONS = ["model_configuration", "model_repository"]
_STREAM_INFER = f"/{SERVICE_NAME}/ModelStreamInfer"
_INDEX_PAGE = 500


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self, registry: ModelRegistry, inference: InferenceService, limits: LimitSettings, stream_window: int
    ) -> None:
        self._registry = registry
        self._inference = inference
        self._limits = limits
        self._stream_window = stream_window

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> pb.ServerReadyResponse:
        # NOTE: services are added only once the store is open, and a stopping server refuses new RPCs (grpc.health
        # reports NOT_SERVING during the grace period): answering at all means ready.
        return pb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="tuneserve", version=__version__, extensions=EXTENSIONS)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> pb.ModelReadyResponse:
        ref = VersionRefConverter.to_types(request.name, request.version)
        try:
            await self._inference.resolve(ref)
        except (NotFound, FailedPrecondition):  # NOTE: as Triton: an unknown or unservable model is just not ready
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> pb.ModelMetadataResponse:
        ref = VersionRefConverter.to_types(request.name, request.version)
        target = await self._inference.resolve(ref)
        versions = [ref.version] if ref.version else _ready_versions(target.model)
        return ModelMetadataConverter.from_types(target.model, versions)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> pb.ModelConfigResponse:
        ref = VersionRefConverter.to_types(request.name, request.version)
        target = await self._inference.resolve(ref)
        return ModelConfigConverter.from_types(target.model, self._limits.max_predict_batch)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        return await self._infer(request, context)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async def infer(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
            return await self._infer(request, context)

        async for answer in answer_concurrently(request_iterator, infer, self._stream_window):
            if answer.error is None:
                yield pb.ModelStreamInferResponse(infer_response=answer.result)
            else:
                _, message = error_status(answer.error, _STREAM_INFER)
                echo = pb.ModelInferResponse(model_name=answer.request.model_name, id=answer.request.id)
                yield pb.ModelStreamInferResponse(error_message=message, infer_response=echo)

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        check_repository(request.repository_name)
        return RepositoryIndexConverter.from_types(await self._all_models(), request.ready)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        model_id = RepositoryParametersConverter.to_types(
            request.repository_name, request.model_name, request.parameters, "RepositoryModelLoad"
        )
        await self._inference.load_model(model_id)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        # NOTE: tritonclient always sends unload_dependents; a tuneserve model has no dependents, so it changes nothing
        model_id = RepositoryParametersConverter.to_types(
            request.repository_name, request.model_name, request.parameters, "RepositoryModelUnload",
            allowed=frozenset({"unload_dependents"}),
        )
        await self._inference.unload_model(model_id)
        return pb.RepositoryModelUnloadResponse()

    async def _infer(self, request: pb.ModelInferRequest, context: Context) -> pb.ModelInferResponse:
        target = await self._inference.resolve(VersionRefConverter.to_types(request.model_name, request.model_version))
        infer = InferRequestConverter.to_types(request, self._limits, target.model)
        served = await self._inference.infer(target, infer.inputs, time_remaining=context.time_remaining())
        return InferResponseConverter.from_types(
            InferResult(infer, target.model.id, target.version, served.open_inference())
        )

    async def _all_models(self) -> list[ModelRecord]:
        models: list[ModelRecord] = []
        while len(page := await self._registry.list(Page(size=_INDEX_PAGE, offset=len(models)))) == _INDEX_PAGE:
            models.extend(page)
        return models + page


def _ready_versions(model: ModelRecord) -> list[int]:
    return sorted(v.version for v in model.versions if v.state is VersionState.READY)
