"""tuneserve.v1 servicers: each method converts the request, calls the core and converts the result back.
Errors are mapped to status codes by `StatusInterceptor`, never here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from tuneserve.core.data.datasets import DatasetManager
from tuneserve.core.evaluation.evaluator import Evaluator
from tuneserve.core.recommend.recommender import Recommender
from tuneserve.core.registry import ModelRegistry
from tuneserve.core.serving.inference import InferenceService, StreamRequest
from tuneserve.core.training.jobs import JobManager
from tuneserve.engines.backbones import list_backbones
from tuneserve.errors import InvalidArgument
from tuneserve.grpc.interceptors import error_status
from tuneserve.grpc.v1 import converters as cv
from tuneserve.types import ModelRecord
from tuneserve_client.proto.tuneserve.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_PREDICT_STREAM = "/tuneserve.v1.PredictionService/PredictStream"


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, datasets: DatasetManager) -> None:
        self._datasets = datasets

    async def UploadDataset(
        self, request_iterator: AsyncIterator[datasets_pb2.UploadDatasetRequest], context: Context
    ) -> datasets_pb2.Dataset:
        requests = self._datasets.paced(request_iterator)   # a stalled stream is ended (upload_idle_timeout_seconds)
        first = await anext(requests, None)
        if first is None or not first.HasField("metadata"):
            raise InvalidArgument("the first UploadDatasetRequest must carry metadata (name, format, columns)")
        meta = cv.upload_metadata_from_pb(first.metadata)
        return cv.dataset_to_pb(await self._datasets.upload(meta, _chunks(requests)))

    async def GetDataset(self, request: datasets_pb2.GetDatasetRequest, context: Context) -> datasets_pb2.Dataset:
        return cv.dataset_to_pb(await self._datasets.get(request.id))

    async def ListDatasets(
        self, request: datasets_pb2.ListDatasetsRequest, context: Context
    ) -> datasets_pb2.ListDatasetsResponse:
        page = cv.page_from_pb(request.page_size, request.page_token)
        rows, token = cv.next_page_token(page, await self._datasets.list(page))
        return datasets_pb2.ListDatasetsResponse(datasets=map(cv.dataset_to_pb, rows), next_page_token=token)

    async def DeleteDataset(
        self, request: datasets_pb2.DeleteDatasetRequest, context: Context
    ) -> datasets_pb2.DeleteDatasetResponse:
        await self._datasets.delete(request.id)
        return datasets_pb2.DeleteDatasetResponse()


async def _chunks(requests: AsyncIterator[datasets_pb2.UploadDatasetRequest]) -> AsyncIterator[bytes]:
    async for request in requests:
        if not request.HasField("chunk"):
            raise InvalidArgument("only the first UploadDatasetRequest may carry metadata; later ones carry chunks")
        yield request.chunk


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, jobs: JobManager, recommender: Recommender) -> None:
        self._jobs = jobs
        self._recommender = recommender

    async def FineTune(self, request: training_pb2.FineTuneRequest, context: Context) -> training_pb2.Job:
        return cv.job_to_pb(await self._jobs.submit(cv.fine_tune_from_pb(request)))

    async def GetJob(self, request: training_pb2.GetJobRequest, context: Context) -> training_pb2.Job:
        return cv.job_to_pb(await self._jobs.get(request.id))

    async def ListJobs(self, request: training_pb2.ListJobsRequest, context: Context) -> training_pb2.ListJobsResponse:
        page = cv.page_from_pb(request.page_size, request.page_token)
        rows, token = cv.next_page_token(page, await self._jobs.list(page, cv.job_state_from_pb(request.state)))
        return training_pb2.ListJobsResponse(jobs=map(cv.job_to_pb, rows), next_page_token=token)

    async def WatchJob(
        self, request: training_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[training_pb2.JobEvent]:
        if request.after_sequence < 0:
            raise InvalidArgument("after_sequence must be >= 0")
        async for event in self._jobs.watch(request.id, request.after_sequence):
            yield cv.event_to_pb(event)

    async def CancelJob(self, request: training_pb2.CancelJobRequest, context: Context) -> training_pb2.Job:
        return cv.job_to_pb(await self._jobs.cancel(request.id))

    async def ListBackbones(
        self, request: training_pb2.ListBackbonesRequest, context: Context
    ) -> training_pb2.ListBackbonesResponse:
        return training_pb2.ListBackbonesResponse(backbones=map(cv.backbone_to_pb, list_backbones()))

    async def RecommendBackbone(
        self, request: training_pb2.RecommendBackboneRequest, context: Context
    ) -> training_pb2.RecommendBackboneResponse:
        recommendation = await self._recommender.recommend(cv.recommend_from_pb(request), context.time_remaining())
        return cv.recommendation_to_pb(recommendation)


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry, inference: InferenceService, evaluator: Evaluator) -> None:
        self._registry = registry
        self._inference = inference
        self._evaluator = evaluator

    async def ListModels(self, request: models_pb2.ListModelsRequest, context: Context) -> models_pb2.ListModelsResponse:
        page = cv.page_from_pb(request.page_size, request.page_token)
        rows, token = cv.next_page_token(page, await self._registry.list(page))
        return models_pb2.ListModelsResponse(models=map(self._model_to_pb, rows), next_page_token=token)

    async def GetModel(self, request: models_pb2.GetModelRequest, context: Context) -> models_pb2.Model:
        return self._model_to_pb(await self._registry.get(request.id))

    async def DeleteModel(self, request: models_pb2.DeleteModelRequest, context: Context) -> models_pb2.DeleteModelResponse:
        await self._registry.delete(request.id)
        return models_pb2.DeleteModelResponse()

    async def Evaluate(self, request: models_pb2.EvaluateRequest, context: Context) -> models_pb2.EvaluateResponse:
        if request.compare:
            first, others = cv.compare_from_pb(request)
            return cv.comparison_result_to_pb(await self._evaluator.compare(first, others, request.dataset_id))
        report = await self._evaluator.evaluate(request.model_id, request.version, request.dataset_id)
        return cv.evaluation_to_pb(report)

    async def LoadModel(self, request: models_pb2.LoadModelRequest, context: Context) -> models_pb2.Model:
        model = await self._inference.load_model(request.id, request.version, request.variant)
        return self._model_to_pb(model)

    async def UnloadModel(self, request: models_pb2.UnloadModelRequest, context: Context) -> models_pb2.Model:
        return self._model_to_pb(await self._inference.unload_model(request.id, request.version))

    async def SetModelAlias(self, request: models_pb2.SetModelAliasRequest, context: Context) -> models_pb2.Model:
        return self._model_to_pb(await self._registry.set_alias(request.id, request.alias, request.version))

    def _model_to_pb(self, model: ModelRecord) -> models_pb2.Model:
        return cv.model_to_pb(model, self._inference.serving(model), self._registry.summaries(model))


class PredictionServicer(prediction_pb2_grpc.PredictionServiceServicer):
    def __init__(self, inference: InferenceService) -> None:
        self._inference = inference

    async def Predict(self, request: prediction_pb2.PredictRequest, context: Context) -> prediction_pb2.PredictResponse:
        result = await self._inference.predict(cv.predict_from_pb(request), context.time_remaining())
        return cv.predict_to_pb(result)

    async def PredictStream(
        self, request_iterator: AsyncIterator[prediction_pb2.PredictStreamRequest], context: Context
    ) -> AsyncIterator[prediction_pb2.PredictStreamResponse]:
        async def requests() -> AsyncIterator[StreamRequest]:
            async for r in request_iterator:
                yield StreamRequest(r.request_id, cv.predict_from_pb(r.request), context.time_remaining())

        async for request_id, outcome in self._inference.predict_stream(requests()):
            if isinstance(outcome, Exception):
                code, message = error_status(outcome, _PREDICT_STREAM)
                yield cv.stream_error_to_pb(request_id, code.value[0], message)
            else:
                yield cv.stream_result_to_pb(request_id, outcome)
