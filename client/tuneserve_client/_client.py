"""`AsyncClient`: the typed asyncio client of the four tuneserve.v1 services. The sync `Client` wraps it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

from ._exceptions import DeadlineExceeded, Unavailable, map_rpc_errors
from ._proto.tuneserve.v1 import datasets_pb2_grpc, models_pb2_grpc, prediction_pb2_grpc, training_pb2_grpc
from ._proto.tuneserve.v1.datasets_pb2 import (
    Dataset,
    DatasetFormat,
    DatasetUploadMetadata,
    DeleteDatasetRequest,
    DeleteDatasetResponse,
    GetDatasetRequest,
    ListDatasetsRequest,
    ListDatasetsResponse,
    UploadDatasetRequest,
)
from ._proto.tuneserve.v1.models_pb2 import (
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
from ._proto.tuneserve.v1.prediction_pb2 import (
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
)
from ._proto.tuneserve.v1.training_pb2 import (
    CancelJobRequest,
    ExportOptions,
    FineTuneRequest,
    GetJobRequest,
    Hyperparameters,
    Job,
    JobEvent,
    JobState,
    ListBackbonesRequest,
    ListBackbonesResponse,
    ListJobsRequest,
    ListJobsResponse,
    RecommendBackboneRequest,
    RecommendBackboneResponse,
    WatchJobRequest,
)
from ._security import PemSource, Security
from ._version import __version__

__all__ = ["AsyncClient"]

_R = TypeVar("_R", bound=Message)
_T = TypeVar("_T")

DEFAULT_TARGET = "localhost:50051"
DEFAULT_CHUNK_SIZE = 1024 * 1024
TERMINAL_JOB_STATES = frozenset({JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED})
# wait_for_job: reconnects after a broken event stream, backing off 0.5, 1, 2, 4, 5, 5... s, and gives up after this
# many consecutive attempts that deliver no event (about 40 s: long enough for a server restart).
_MAX_RECONNECTS = 10
# recommend_backbone: the call's deadline is its time budget (the server's default when 0) plus this margin, unless
# the client's own timeout is longer; the server keeps within the deadline and reports unscored candidates as such.
_RECOMMEND_DEFAULT_BUDGET = 300.0
_RECOMMEND_DEADLINE_MARGIN = 60.0


def job_state(value: JobState | str) -> JobState:
    """`JobState.JOB_STATE_RUNNING`, `"JOB_STATE_RUNNING"` or `"running"` -> the enum value."""
    return cast(JobState, JobState.Value(_enum_name("JOB_STATE_", value))) if isinstance(value, str) else value


def dataset_format(value: DatasetFormat | str) -> DatasetFormat:
    """`DatasetFormat.DATASET_FORMAT_CSV`, `"DATASET_FORMAT_CSV"` or `"csv"` -> the enum value."""
    if isinstance(value, str):
        return cast(DatasetFormat, DatasetFormat.Value(_enum_name("DATASET_FORMAT_", value)))
    return value


def _enum_name(prefix: str, name: str) -> str:
    name = name.upper()
    return name if name.startswith(prefix) else prefix + name


def _hyperparameters(value: Hyperparameters | Mapping[str, Any] | None) -> Hyperparameters | None:
    if value is None or isinstance(value, Hyperparameters):
        return value
    # None in a mapping means "unset" (the server's default), which is how the CLI passes flags it was not given.
    return Hyperparameters(**{key: v for key, v in value.items() if v is not None})


def _export_options(value: ExportOptions | Mapping[str, Any] | None) -> ExportOptions | None:
    if value is None or isinstance(value, ExportOptions):
        return value
    return ExportOptions(**{key: v for key, v in value.items() if v is not None})


def _channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    # gRPC's default 4 MiB receive limit rejects real Predict batches and evaluation reports: set both directions.
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.primary_user_agent", f"tuneserve-client/{__version__}"),
    ]


async def _as_async(items: AsyncIterable[_T] | Iterable[_T]) -> AsyncIterator[_T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _file_chunks(file: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, chunk_size):
        yield chunk


async def _byte_chunks(data: bytes, chunk_size: int) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start : start + chunk_size])


def _backoff(attempt: int) -> float:
    return float(min(0.25 * 2**attempt, 5.0))


class AsyncClient:
    """Typed asyncio client for a tuneserve server.

        async with AsyncClient("localhost:50051") as client:
            dataset = await client.upload_dataset("train.csv")
            job = await client.fine_tune(dataset.id, hyperparameters={"epochs": 3})
            job = await client.wait_for_job(job.id, on_event=print)
            response = await client.predict(job.model_id, ["some text"])

    `timeout` is the deadline of each unary call in seconds (None: no deadline); the streaming calls (upload_dataset,
    watch_job) have none. `metadata` is sent with every call. Pass `channel` to use your own `grpc.aio.Channel`
    (interceptors, tests); the client then leaves closing it to you. Every failed call raises a `TuneServeError`
    subclass.

    Security: `token` is sent as `authorization: Bearer TOKEN` with every call. `tls=True` opens a TLS channel that
    checks the server's certificate against the system's roots, or against `root_certificates` (PEM bytes or a file
    path; implies TLS); `client_cert` and `client_key` (PEM bytes or paths, both or neither) add the client's
    certificate for mutual TLS. Unreadable files raise OSError, inconsistent options ValueError.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        channel: grpc.aio.Channel | None = None,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
    ) -> None:
        security = Security.from_options(
            token=token, tls=tls, root_certificates=root_certificates, client_cert=client_cert, client_key=client_key
        )
        if channel is not None and security.tls:
            raise ValueError("pass either channel or TLS options: the TLS options cannot apply to your own channel")
        self.target = target
        self._owns_channel = channel is None
        if channel is None:
            options = _channel_options(max_message_bytes)
            channel = (
                grpc.aio.secure_channel(target, security.credentials(), options=options)
                if security.tls
                else grpc.aio.insecure_channel(target, options=options)
            )
        self._channel = channel
        self._timeout = timeout
        self._metadata = (*security.metadata(), *metadata)
        self._datasets = datasets_pb2_grpc.DatasetServiceStub(channel)  # type: ignore[no-untyped-call]
        self._training = training_pb2_grpc.TrainingServiceStub(channel)  # type: ignore[no-untyped-call]
        self._models = models_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        self._prediction = prediction_pb2_grpc.PredictionServiceStub(channel)  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel the client created (an injected channel stays open)."""
        if self._owns_channel:
            await self._channel.close(None)

    async def _unary(self, method: Callable[..., Awaitable[Any]], request: Message, returns: type[_R]) -> _R:
        # `returns` names the response type for the type checker: the generated stubs are untyped
        with map_rpc_errors():
            return cast(_R, await method(request, timeout=self._timeout, metadata=self._metadata))

    # DatasetService

    async def upload_dataset(
        self,
        path: str | PathLike[str],
        *,
        name: str | None = None,
        format: DatasetFormat | str | None = None,
        text_column: str = "",
        label_column: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        image_column: str = "",
    ) -> Dataset:
        """Streams a CSV, JSONL or zip file to the server. `name` defaults to the file name, whose extension tells
        the server the format unless `format` ("csv", "jsonl", "zip" or a `DatasetFormat`) is given. A zip holds
        images in class folders (`cat/001.jpg`); a JSONL file whose rows hold base64 images names that field in
        `image_column`. Raises OSError when the file cannot be read."""
        path = Path(path)
        metadata = self._upload_metadata(
            name or path.name, format, text_column, label_column, chunk_size, image_column
        )
        with path.open("rb") as file:  # opened before the call starts, so a missing file fails plainly
            return await self._upload(metadata, _file_chunks(file, chunk_size))

    async def upload_dataset_bytes(
        self,
        data: bytes,
        *,
        name: str,
        format: DatasetFormat | str | None = None,
        text_column: str = "",
        label_column: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        image_column: str = "",
    ) -> Dataset:
        """Like `upload_dataset`, from bytes in memory; `name` (e.g. "train.csv") gives the format by default."""
        metadata = self._upload_metadata(name, format, text_column, label_column, chunk_size, image_column)
        return await self._upload(metadata, _byte_chunks(data, chunk_size))

    @staticmethod
    def _upload_metadata(
        name: str, format: DatasetFormat | str | None, text_column: str, label_column: str, chunk_size: int,
        image_column: str = "",
    ) -> DatasetUploadMetadata:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        fmt = DatasetFormat.DATASET_FORMAT_UNSPECIFIED if format is None else dataset_format(format)
        return DatasetUploadMetadata(
            name=name, format=fmt, text_column=text_column, label_column=label_column, image_column=image_column
        )

    async def _upload(self, metadata: DatasetUploadMetadata, chunks: AsyncIterator[bytes]) -> Dataset:
        async def requests() -> AsyncIterator[UploadDatasetRequest]:
            yield UploadDatasetRequest(metadata=metadata)
            async for chunk in chunks:
                yield UploadDatasetRequest(chunk=chunk)

        with map_rpc_errors():
            dataset: Dataset = await self._datasets.UploadDataset(requests(), metadata=self._metadata)
            return dataset

    async def get_dataset(self, id: str) -> Dataset:
        return await self._unary(self._datasets.GetDataset, GetDatasetRequest(id=id), Dataset)

    async def list_datasets(self, *, page_size: int = 0, page_token: str = "") -> ListDatasetsResponse:
        request = ListDatasetsRequest(page_size=page_size, page_token=page_token)
        return await self._unary(self._datasets.ListDatasets, request, ListDatasetsResponse)

    async def delete_dataset(self, id: str) -> DeleteDatasetResponse:
        return await self._unary(self._datasets.DeleteDataset, DeleteDatasetRequest(id=id), DeleteDatasetResponse)

    # TrainingService

    async def fine_tune(
        self,
        dataset_id: str,
        *,
        validation_dataset_id: str = "",
        backbone: str = "",
        model_name: str = "",
        model_id: str = "",
        hyperparameters: Hyperparameters | Mapping[str, Any] | None = None,
        export: ExportOptions | Mapping[str, Any] | None = None,
        baselines: Sequence[str] = (),
    ) -> Job:
        """Queues a fine-tuning job and returns it at once (see `wait_for_job`). Unset hyperparameters (or None
        values in a mapping) take the server's defaults; an unknown key raises ValueError.

        `baselines=["frozen", "scratch"]` also trains, under the same budget, the backbone frozen (head only) and the
        same architecture from random weights; the result's `baselines` and `transfer_verdict` compare them.

        `export={"int8": True}` also builds an int8 variant, served only if its validation macro F1 is at most
        `int8_max_f1_drop` (default 0.01) below fp32's; the job result's `variant_macro_f1` has both scores."""
        request = FineTuneRequest(
            dataset_id=dataset_id,
            validation_dataset_id=validation_dataset_id,
            backbone=backbone,
            model_name=model_name,
            model_id=model_id,
            hyperparameters=_hyperparameters(hyperparameters),
            export=_export_options(export),
            baselines=list(baselines),
        )
        return await self._unary(self._training.FineTune, request, Job)

    async def get_job(self, id: str) -> Job:
        return await self._unary(self._training.GetJob, GetJobRequest(id=id), Job)

    async def list_jobs(
        self, *, state: JobState | str | None = None, page_size: int = 0, page_token: str = ""
    ) -> ListJobsResponse:
        """`state` filters by state: a `JobState` or its short name ("running")."""
        state_value = JobState.JOB_STATE_UNSPECIFIED if state is None else job_state(state)
        request = ListJobsRequest(state=state_value, page_size=page_size, page_token=page_token)
        return await self._unary(self._training.ListJobs, request, ListJobsResponse)

    async def watch_job(self, id: str, *, after_sequence: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events after `after_sequence` (0: all of them), then live ones; ends after the terminal state."""
        request = WatchJobRequest(id=id, after_sequence=after_sequence)
        call = self._training.WatchJob(request, metadata=self._metadata)
        try:
            with map_rpc_errors():
                async for event in call:
                    yield event
        finally:
            call.cancel()  # a no-op when the stream ended; stops it when the caller stopped iterating early

    async def cancel_job(self, id: str) -> Job:
        return await self._unary(self._training.CancelJob, CancelJobRequest(id=id), Job)

    async def wait_for_job(
        self, id: str, *, on_event: Callable[[JobEvent], None] | None = None, timeout: float | None = None
    ) -> Job:
        """Follows the job's events (calling `on_event` for each) until it ends, and returns the final Job.

        A stream broken by UNAVAILABLE (e.g. a server restart) is resumed after the last event seen. Raises
        `DeadlineExceeded` when `timeout` seconds pass first; the job itself keeps running.
        """
        try:
            return await asyncio.wait_for(self._follow(id, on_event), timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"job {id!r} did not finish within {timeout:g} s") from None

    async def _follow(self, id: str, on_event: Callable[[JobEvent], None] | None) -> Job:
        after_sequence, attempts = 0, 0
        while True:
            try:
                async for event in self.watch_job(id, after_sequence=after_sequence):
                    after_sequence, attempts = event.sequence, 0
                    if on_event is not None:
                        on_event(event)
                job = await self.get_job(id)
                if job.state in TERMINAL_JOB_STATES:
                    return job
                # The stream ended before the job did (a server shutting down may do that): resume it as well.
            except Unavailable:
                if attempts >= _MAX_RECONNECTS:
                    raise
            else:
                if attempts >= _MAX_RECONNECTS:
                    raise Unavailable(f"the event stream of job {id!r} keeps ending before the job does")
            attempts += 1
            await asyncio.sleep(_backoff(attempts))

    async def list_backbones(self) -> ListBackbonesResponse:
        return await self._unary(self._training.ListBackbones, ListBackbonesRequest(), ListBackbonesResponse)

    async def recommend_backbone(
        self,
        dataset_id: str,
        *,
        backbones: Sequence[str] = (),
        max_examples: int = 0,
        time_budget_seconds: float = 0.0,
        max_seq_length: int = 0,
        timeout: float | None = None,
    ) -> RecommendBackboneResponse:
        """Rank `backbones` (default: every catalog backbone of the dataset's modality) by LogME on a stratified
        sample of at most `max_examples` rows, within `time_budget_seconds` (0: the server's defaults). `timeout`
        defaults to the budget plus a minute, or the client's timeout if that is longer."""
        request = RecommendBackboneRequest(
            dataset_id=dataset_id, backbones=list(backbones), max_examples=max_examples,
            time_budget_seconds=time_budget_seconds, max_seq_length=max_seq_length,
        )
        if timeout is None and self._timeout is not None:
            budget = time_budget_seconds if time_budget_seconds > 0 else _RECOMMEND_DEFAULT_BUDGET
            timeout = max(self._timeout, budget + _RECOMMEND_DEADLINE_MARGIN)
        with map_rpc_errors():
            response = await self._training.RecommendBackbone(request, timeout=timeout, metadata=self._metadata)
        return cast(RecommendBackboneResponse, response)

    # ModelService and PredictionService

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

    async def predict(
        self,
        model_id: str,
        texts: Sequence[str] = (),
        *,
        images: Sequence[bytes] = (),
        version: int = 0,
        top_k: int = 0,
        alias: str = "",
        variant: str = "",
    ) -> PredictResponse:
        """Classifies `texts` for a text model, or `images` (encoded JPEG/PNG/WEBP/BMP files' bytes) for an image
        model: one prediction each, in order. `top_k` limits the class scores (0: all classes). `alias` ("latest",
        "production"...) overrides `version`; `variant` "int8" asks for the quantised graph."""
        if isinstance(texts, str) or isinstance(images, bytes):
            raise TypeError("texts is a sequence of strings and images a sequence of bytes objects, one per input")
        request = PredictRequest(
            model_id=model_id, texts=list(texts), images=list(images), version=version, top_k=top_k, alias=alias,
            variant=variant,
        )
        return await self._unary(self._prediction.Predict, request, PredictResponse)

    async def predict_stream(
        self,
        requests: AsyncIterable[PredictStreamRequest] | Iterable[PredictStreamRequest],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[PredictStreamResponse]:
        """Sends `requests` on one bidirectional stream and yields the answers in completion order, each with its
        `request_id`; a failed request is an answer with `error_code`/`error_message`, not an exception. Ends after
        the last request is answered. `timeout` is the deadline of the whole stream (default: none)."""
        call = self._prediction.PredictStream(_as_async(requests), timeout=timeout, metadata=self._metadata)
        try:
            with map_rpc_errors():
                async for response in call:
                    yield response
        finally:
            call.cancel()  # a no-op when the stream ended; stops it when the caller stopped iterating early
