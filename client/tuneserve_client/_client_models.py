"""ModelService calls of `AsyncClient`: the registry (list, get, delete, aliases), Evaluate, and loading a version's
sessions ahead of Predict."""

from __future__ import annotations

from collections.abc import Sequence

from ._client_base import ServiceCalls
from .proto.tuneserve.v1.models_pb2 import (
    DeleteModelRequest,
    DeleteModelResponse,
    EvaluateRequest,
    EvaluateResponse,
    GetModelRequest,
    ListModelsRequest,
    ListModelsResponse,
    LoadModelRequest,
    Model,
    ModelRef,
    SetModelAliasRequest,
    UnloadModelRequest,
)


class ModelCalls(ServiceCalls):
    async def list_models(self, *, page_size: int = 0, page_token: str = "") -> ListModelsResponse:
        return await self._unary(
            self._models.ListModels, ListModelsRequest(page_size=page_size, page_token=page_token), ListModelsResponse
        )

    async def get_model(self, id: str) -> Model:
        return await self._unary(self._models.GetModel, GetModelRequest(id=id), Model)

    async def delete_model(self, id: str) -> DeleteModelResponse:
        return await self._unary(self._models.DeleteModel, DeleteModelRequest(id=id), DeleteModelResponse)

    async def evaluate(
        self, model_id: str, dataset_id: str, *, version: int = 0, compare: Sequence[str | tuple[str, int]] = ()
    ) -> EvaluateResponse:
        """Runs the served model (version 0: the latest READY one) on a dataset and returns its metrics. `compare`
        (model ids, or (model id, version) pairs) evaluates those too, on the same rows, and adds per-metric deltas
        and McNemar's test of the paired predictions (`compared`, `comparisons`)."""
        refs = [ModelRef(model_id=ref) if isinstance(ref, str) else ModelRef(model_id=ref[0], version=ref[1])
                for ref in compare]
        request = EvaluateRequest(model_id=model_id, dataset_id=dataset_id, version=version, compare=refs)
        return await self._unary(self._models.Evaluate, request, EvaluateResponse)

    async def load_model(self, id: str, *, version: int = 0, variant: str = "") -> Model:
        """Opens and warms up a version's ONNX Runtime session now (version 0: the latest READY one; variant "" =
        fp32, or "int8"), so that the first Predict does not wait for it."""
        request = LoadModelRequest(id=id, version=version, variant=variant)
        return await self._unary(self._models.LoadModel, request, Model)

    async def unload_model(self, id: str, *, version: int = 0) -> Model:
        """Closes a version's sessions (version 0: every loaded version) once their in-flight requests finish."""
        return await self._unary(self._models.UnloadModel, UnloadModelRequest(id=id, version=version), Model)

    async def set_model_alias(self, id: str, alias: str, version: int) -> Model:
        """Points `alias` (e.g. "production") at a READY version; version 0 removes it. Requests by alias switch to
        the new version once it is loaded."""
        request = SetModelAliasRequest(id=id, alias=alias, version=version)
        return await self._unary(self._models.SetModelAlias, request, Model)
