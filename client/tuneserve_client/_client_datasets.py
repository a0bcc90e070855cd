"""DatasetService calls of `AsyncClient`: upload (streamed in chunks), get, list, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from os import PathLike
from pathlib import Path
from typing import IO, cast

import grpc

from ._client_base import ServiceCalls, enum_name
from ._exceptions import map_rpc_errors
from .proto.tuneserve.v1.common_pb2 import Task
from .proto.tuneserve.v1.datasets_pb2 import (
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

DEFAULT_CHUNK_SIZE = 1024 * 1024


def dataset_format(value: DatasetFormat | str) -> DatasetFormat:
    """`DatasetFormat.DATASET_FORMAT_CSV`, `"DATASET_FORMAT_CSV"` or `"csv"` -> the enum value."""
    if isinstance(value, str):
        return cast(DatasetFormat, DatasetFormat.Value(enum_name("DATASET_FORMAT_", value)))
    return value


def task_value(value: Task | str) -> Task:
    """`Task.TASK_REGRESSION`, `"TASK_REGRESSION"`, `"regression"`, `"multi_label"` or `"multi-label"` -> the enum
    value."""
    if isinstance(value, str):
        return cast(Task, Task.Value(enum_name("TASK_", value.replace("-", "_"))))
    return value


async def _file_chunks(file: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, chunk_size):
        yield chunk


async def _byte_chunks(data: bytes, chunk_size: int) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start : start + chunk_size])


class DatasetCalls(ServiceCalls):
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
        task: Task | str | None = None,
        labels_column: str = "",
        label_separator: str = "",
        target_column: str = "",
        text_pair_column: str = "",
        tokens_column: str = "",
        tags_column: str = "",
        stray_i_tags: str = "",
    ) -> Dataset:
        """Streams a CSV, JSONL or zip file to the server. `name` defaults to the file name, whose extension tells
        the server the format unless `format` ("csv", "jsonl", "zip" or a `DatasetFormat`) is given. A zip holds
        images in class folders (`cat/001.jpg`); a JSONL file whose rows hold base64 images names that field in
        `image_column`.

        The task comes from the columns (a `labels` column: multi-label, `target`: regression, else classification)
        unless `task` ("classification", "multi-label", "regression" or a `Task`) says it; `labels_column`,
        `target_column` and `text_pair_column` rename those columns (a `text_pair` column makes a dataset of text
        pairs), and `label_separator` (default "|") splits a multi-label CSV cell. Token classification is uploaded as
        CoNLL text (format "conll", or a .conll/.bio name) or JSONL with task "token_classification" (`tokens_column`,
        `tags_column`: default "tokens", "tags"); `stray_i_tags` ("repair" or "refuse") says what to do with an I- tag
        that continues nothing. Raises OSError when the file cannot
        be read, ValueError for an unknown task."""
        path = Path(path)
        metadata = self._upload_metadata(
            name or path.name, format, chunk_size, text_column=text_column, label_column=label_column,
            image_column=image_column, task=task, labels_column=labels_column, label_separator=label_separator,
            target_column=target_column, text_pair_column=text_pair_column, tokens_column=tokens_column,
            tags_column=tags_column, stray_i_tags=stray_i_tags,
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
        task: Task | str | None = None,
        labels_column: str = "",
        label_separator: str = "",
        target_column: str = "",
        text_pair_column: str = "",
        tokens_column: str = "",
        tags_column: str = "",
        stray_i_tags: str = "",
    ) -> Dataset:
        """Like `upload_dataset`, from bytes in memory; `name` (e.g. "train.csv") gives the format by default."""
        metadata = self._upload_metadata(
            name, format, chunk_size, text_column=text_column, label_column=label_column, image_column=image_column,
            task=task, labels_column=labels_column, label_separator=label_separator, target_column=target_column,
            text_pair_column=text_pair_column, tokens_column=tokens_column, tags_column=tags_column,
            stray_i_tags=stray_i_tags,
        )
        return await self._upload(metadata, _byte_chunks(data, chunk_size))

    @staticmethod
    def _upload_metadata(
        name: str, format: DatasetFormat | str | None, chunk_size: int, *, task: Task | str | None, **columns: str
    ) -> DatasetUploadMetadata:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        fmt = DatasetFormat.DATASET_FORMAT_UNSPECIFIED if format is None else dataset_format(format)
        return DatasetUploadMetadata(
            name=name, format=fmt, task=Task.TASK_UNSPECIFIED if task is None else task_value(task), **columns
        )

    async def _upload(self, metadata: DatasetUploadMetadata, chunks: AsyncIterator[bytes]) -> Dataset:
        """The metadata, then the chunks, written one by one: once the server has ended the call (it refused the
        upload: the concurrency or size limits, a bad row) no more chunks are written and its status is what is
        raised. A write that meets the server's status makes grpc's asyncio client report INTERNAL "Internal error
        from Core" in its place (grpc/grpc#36066); not writing past the end keeps that to a write already under way."""
        with map_rpc_errors():
            call = self._datasets.UploadDataset(metadata=self._metadata)
            try:
                await call.write(UploadDatasetRequest(metadata=metadata))
                async for chunk in chunks:
                    if call.done():
                        break
                    await call.write(UploadDatasetRequest(chunk=chunk))
                if not call.done():
                    await call.done_writing()
            except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
                pass  # the call ended between the check and the write: awaiting it raises its own status
            dataset: Dataset = await call
            return dataset

    async def get_dataset(self, id: str) -> Dataset:
        return await self._unary(self._datasets.GetDataset, GetDatasetRequest(id=id), Dataset)

    async def list_datasets(self, *, page_size: int = 0, page_token: str = "") -> ListDatasetsResponse:
        request = ListDatasetsRequest(page_size=page_size, page_token=page_token)
        return await self._unary(self._datasets.ListDatasets, request, ListDatasetsResponse)

    async def delete_dataset(self, id: str) -> DeleteDatasetResponse:
        return await self._unary(self._datasets.DeleteDataset, DeleteDatasetRequest(id=id), DeleteDatasetResponse)
