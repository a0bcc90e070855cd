"""`Client`: the synchronous client, a thin wrapper that runs `AsyncClient` on a private event loop in a daemon
thread. Each method submits the matching coroutine and waits for it; streams become plain iterators."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, TypeVar

from ._client import DEFAULT_TARGET, AsyncClient
from ._client_datasets import DEFAULT_CHUNK_SIZE
from ._security import PemSource, Security
from .proto.tuneserve.v1.common_pb2 import Task
from .proto.tuneserve.v1.datasets_pb2 import Dataset, DatasetFormat, DeleteDatasetResponse, ListDatasetsResponse
from .proto.tuneserve.v1.models_pb2 import (
    DeleteModelResponse,
    EvaluateResponse,
    ListModelsResponse,
    Model,
)
from .proto.tuneserve.v1.prediction_pb2 import PredictResponse, PredictStreamRequest, PredictStreamResponse
from .proto.tuneserve.v1.training_pb2 import (
    ExportOptions,
    Hyperparameters,
    Job,
    JobEvent,
    JobState,
    ListBackbonesResponse,
    ListJobsResponse,
    RecommendBackboneResponse,
)

__all__ = ["Client"]

_T = TypeVar("_T")
_POLL_SECONDS = 0.2


async def _create(
    target: str, timeout: float | None, max_message_bytes: int, metadata: Sequence[tuple[str, str]],
    security: Security,
) -> AsyncClient:
    # NOTE: created inside the loop's thread, so that the grpc.aio channel binds to the loop that will run it.
    return AsyncClient(
        target, timeout=timeout, max_message_bytes=max_message_bytes, metadata=metadata, token=security.token,
        tls=security.tls, root_certificates=security.root_certificates, client_cert=security.client_cert,
        client_key=security.client_key,
    )


async def _next(iterator: AsyncIterator[_T]) -> tuple[_T, ...]:
    try:
        return (await iterator.__anext__(),)
    except StopAsyncIteration:
        return ()


async def _from_thread(items: Iterable[_T]) -> AsyncIterator[_T]:
    # NOTE: the caller's iterable may block (a generator reading a socket or stdin): advance it on a worker thread
    # so that the client's event loop keeps serving the stream meanwhile. Lists and tuples are read directly.
    if isinstance(items, (list, tuple)):
        for item in items:
            yield item
        return
    iterator, end = iter(items), object()
    while (item := await asyncio.to_thread(next, iterator, end)) is not end:
        yield item


async def _shutdown(client: AsyncClient) -> None:
    await client.close()
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


class Client:
    """Synchronous tuneserve client with the methods of `AsyncClient` (see there for what each does).

        with Client("localhost:50051") as client:
            job = client.fine_tune(client.upload_dataset("train.csv").id)
            job = client.wait_for_job(job.id, on_event=print)

    It owns an event loop running in a daemon thread; `close()` (or leaving the `with` block) stops it. The
    `on_event` callback of `wait_for_job` runs on that thread (and must not call the client). Interrupting a call
    (Ctrl-C) cancels it. There is no `channel` argument: a grpc.aio channel belongs to the event loop that made it,
    and this one is private; use `AsyncClient(channel=...)` for a channel of your own. The security options (`token`,
    `tls`, `root_certificates`, `client_cert`, `client_key`) are `AsyncClient`'s; their files are read here, so a bad
    one raises before any thread starts.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 60.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        tls: bool = False,
        root_certificates: PemSource | None = None,
        client_cert: PemSource | None = None,
        client_key: PemSource | None = None,
    ) -> None:
        # NOTE: files are read and options checked here, so a bad one raises before the loop thread starts
        security = Security.from_options(
            token=token, tls=tls, root_certificates=root_certificates, client_cert=client_cert, client_key=client_key
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tuneserve-client", daemon=True)
        self._thread.start()
        self._closed = False
        self._client = self._run(_create(target, timeout, max_message_bytes, metadata, security))
        self.target = target

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel and stops the event loop and its thread. Calling it again does nothing."""
        if self._closed:
            return
        try:
            self._run(_shutdown(self._client))
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed or threading.current_thread() is self._thread:
            coro.close()
            # from its own loop thread (an on_event callback calling the client) the wait below would never end
            raise RuntimeError("the client is closed" if self._closed else "the Client cannot be called from on_event")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            while True:
                # NOTE: wait in short slices: a blocked lock wait is not interrupted by Ctrl-C on every platform
                # (Windows; Linux when the signal lands on another thread), a poll lets KeyboardInterrupt through.
                try:
                    return future.result(timeout=_POLL_SECONDS)
                except concurrent.futures.TimeoutError:
                    if future.done():  # the call itself raised TimeoutError
                        raise
        except BaseException:
            future.cancel()  # a Ctrl-C while waiting stops the call too; a no-op when the call itself failed
            raise

    def _iterate(self, iterator: AsyncIterator[_T]) -> Iterator[_T]:
        try:
            while item := self._run(_next(iterator)):
                yield item[0]
        finally:
            if isinstance(iterator, AsyncGenerator) and not self._closed:
                self._run(iterator.aclose())

    def upload_dataset(
        self,
        path: str | PathLike[str],
        *,
        name: str | None = None,
        format: DatasetFormat | str | None = None,
        text_column: str = "",
        label_column: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        image_column: str = "",
        task: Task | str | None = None,
        labels_column: str = "",
        label_separator: str = "",
        target_column: str = "",
        text_pair_column: str = "",
        tokens_column: str = "",
        tags_column: str = "",
        stray_i_tags: str = "",
    ) -> Dataset:
        return self._run(
            self._client.upload_dataset(
                path,
                name=name,
                format=format,
                text_column=text_column,
                label_column=label_column,
                chunk_size=chunk_size,
                image_column=image_column,
                task=task,
                labels_column=labels_column,
                label_separator=label_separator,
                target_column=target_column,
                text_pair_column=text_pair_column,
                tokens_column=tokens_column,
                tags_column=tags_column,
                stray_i_tags=stray_i_tags,
            )
        )

    def upload_dataset_bytes(
        self,
        data: bytes,
        *,
        name: str,
        format: DatasetFormat | str | None = None,
        text_column: str = "",
        label_column: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        image_column: str = "",
        task: Task | str | None = None,
        labels_column: str = "",
        label_separator: str = "",
        target_column: str = "",
        text_pair_column: str = "",
        tokens_column: str = "",
        tags_column: str = "",
        stray_i_tags: str = "",
    ) -> Dataset:
        return self._run(
            self._client.upload_dataset_bytes(
                data,
                name=name,
                format=format,
                text_column=text_column,
                label_column=label_column,
                chunk_size=chunk_size,
                image_column=image_column,
                task=task,
                labels_column=labels_column,
                label_separator=label_separator,
                target_column=target_column,
                text_pair_column=text_pair_column,
                tokens_column=tokens_column,
                tags_column=tags_column,
                stray_i_tags=stray_i_tags,
            )
        )

    def get_dataset(self, id: str) -> Dataset:
        return self._run(self._client.get_dataset(id))

    def list_datasets(self, *, page_size: int = 0, page_token: str = "") -> ListDatasetsResponse:
        return self._run(self._client.list_datasets(page_size=page_size, page_token=page_token))

    def delete_dataset(self, id: str) -> DeleteDatasetResponse:
        return self._run(self._client.delete_dataset(id))

    def fine_tune(
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
        search: int = 0,
        search_budget_seconds: float = 0.0,
    ) -> Job:
        return self._run(
            self._client.fine_tune(
                dataset_id,
                validation_dataset_id=validation_dataset_id,
                backbone=backbone,
                model_name=model_name,
                model_id=model_id,
                hyperparameters=hyperparameters,
                export=export,
                baselines=baselines,
                search=search,
                search_budget_seconds=search_budget_seconds,
            )
        )

    def get_job(self, id: str) -> Job:
        return self._run(self._client.get_job(id))

    def list_jobs(
        self, *, state: JobState | str | None = None, page_size: int = 0, page_token: str = ""
    ) -> ListJobsResponse:
        return self._run(self._client.list_jobs(state=state, page_size=page_size, page_token=page_token))

    def watch_job(self, id: str, *, after_sequence: int = 0) -> Iterator[JobEvent]:
        return self._iterate(self._client.watch_job(id, after_sequence=after_sequence))

    def cancel_job(self, id: str) -> Job:
        return self._run(self._client.cancel_job(id))

    def wait_for_job(
        self, id: str, *, on_event: Callable[[JobEvent], None] | None = None, timeout: float | None = None
    ) -> Job:
        return self._run(self._client.wait_for_job(id, on_event=on_event, timeout=timeout))

    def list_backbones(self) -> ListBackbonesResponse:
        return self._run(self._client.list_backbones())

    def recommend_backbone(
        self,
        dataset_id: str,
        *,
        backbones: Sequence[str] = (),
        max_examples: int = 0,
        time_budget_seconds: float = 0.0,
        max_seq_length: int = 0,
        timeout: float | None = None,
    ) -> RecommendBackboneResponse:
        return self._run(
            self._client.recommend_backbone(
                dataset_id, backbones=backbones, max_examples=max_examples, time_budget_seconds=time_budget_seconds,
                max_seq_length=max_seq_length, timeout=timeout,
            )
        )

    def list_models(self, *, page_size: int = 0, page_token: str = "") -> ListModelsResponse:
        return self._run(self._client.list_models(page_size=page_size, page_token=page_token))

    def get_model(self, id: str) -> Model:
        return self._run(self._client.get_model(id))

    def delete_model(self, id: str) -> DeleteModelResponse:
        return self._run(self._client.delete_model(id))

    def evaluate(
        self, model_id: str, dataset_id: str, *, version: int = 0, compare: Sequence[str | tuple[str, int]] = ()
    ) -> EvaluateResponse:
        return self._run(self._client.evaluate(model_id, dataset_id, version=version, compare=compare))

    def load_model(self, id: str, *, version: int = 0, variant: str = "") -> Model:
        return self._run(self._client.load_model(id, version=version, variant=variant))

    def unload_model(self, id: str, *, version: int = 0) -> Model:
        return self._run(self._client.unload_model(id, version=version))

    def set_model_alias(self, id: str, alias: str, version: int) -> Model:
        return self._run(self._client.set_model_alias(id, alias, version))

    def predict(
        self,
        model_id: str,
        texts: Sequence[str] = (),
        *,
        text_pairs: Sequence[str] = (),
        images: Sequence[bytes] = (),
        version: int = 0,
        top_k: int = 0,
        alias: str = "",
        variant: str = "",
    ) -> PredictResponse:
        return self._run(
            self._client.predict(
                model_id, texts, text_pairs=text_pairs, images=images, version=version, top_k=top_k, alias=alias,
                variant=variant,
            )
        )

    def predict_stream(
        self, requests: Iterable[PredictStreamRequest], *, timeout: float | None = None
    ) -> Iterator[PredictStreamResponse]:
        """`requests` is consumed on a worker thread as the stream needs it (it may be a blocking generator)."""
        return self._iterate(self._client.predict_stream(_from_thread(requests), timeout=timeout))
