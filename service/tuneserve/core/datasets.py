"""Datasets: stream an upload to disk, validate it, store normalised rows, list and delete."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tuneserve.core.ids import new_id
from tuneserve.core.parsing import ParseLimits, infer_format, parse_file
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from tuneserve.settings import LimitSettings
from tuneserve.store import ArtifactStore, MetadataStore
from tuneserve.types import DatasetRecord, Page


@dataclass(frozen=True)
class UploadMetadata:
    name: str
    format: str = ""          # csv | jsonl | "" (from the name's extension)
    text_column: str = "text"
    label_column: str = "label"


class DatasetManager:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, limits: LimitSettings) -> None:
        self._store = store
        self._artifacts = artifacts
        self._limits = limits

    async def upload(self, meta: UploadMetadata, chunks: AsyncIterator[bytes]) -> DatasetRecord:
        if not meta.name:
            raise InvalidArgument("metadata.name is required (usually the file name)")
        fmt = infer_format(meta.name, meta.format)
        staged = self._artifacts.temp_dir()
        try:
            raw = staged / "upload"
            size, digest = await self._receive(chunks, raw)
            if size == 0:
                raise InvalidArgument("the dataset file is empty")
            limits = ParseLimits(
                self._limits.max_dataset_rows, self._limits.max_labels, self._limits.max_text_chars,
                self._limits.max_name_chars,
            )
            parsed = await asyncio.to_thread(
                parse_file, raw, fmt, meta.text_column or "text", meta.label_column or "label", limits
            )
            record = DatasetRecord(
                id=new_id("ds"), name=meta.name, format=fmt, modality="text", num_rows=len(parsed.rows),
                labels=sorted(parsed.label_counts), label_counts=parsed.label_counts,
                num_duplicates=parsed.num_duplicates, size_bytes=size, sha256=digest, create_time=time.time(),
            )
            await asyncio.to_thread(_write_rows, staged / "data.jsonl", parsed.rows)
            raw.unlink()
            self._artifacts.publish_dir(staged, self._artifacts.dataset_dir(record.id))
        except BaseException:
            self._artifacts.remove(staged)
            raise
        await self._store.add_dataset(record)
        return record

    async def _receive(self, chunks: AsyncIterator[bytes], path: Path) -> tuple[int, str]:
        size, digest = 0, hashlib.sha256()
        with open(path, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self._limits.max_dataset_bytes:
                    raise ResourceExhausted(
                        f"dataset larger than {self._limits.max_dataset_bytes} bytes (limit max_dataset_bytes)"
                    )
                digest.update(chunk)
                out.write(chunk)
        return size, digest.hexdigest()

    async def get(self, dataset_id: str) -> DatasetRecord:
        record = await self._store.get_dataset(dataset_id)
        if record is None:
            raise NotFound("dataset", dataset_id)
        return record

    async def list(self, page: Page) -> list[DatasetRecord]:
        return await self._store.list_datasets(page)

    async def delete(self, dataset_id: str) -> None:
        await self.get(dataset_id)
        busy = await self._store.jobs_referencing_dataset(dataset_id)
        if busy:
            raise FailedPrecondition(
                f"dataset {dataset_id!r} is used by job {busy[0].id!r} ({busy[0].state.value}); cancel it first"
            )
        await self._store.delete_dataset(dataset_id)
        self._artifacts.remove(self._artifacts.dataset_dir(dataset_id))

    def rows_path(self, dataset_id: str) -> Path:
        return self._artifacts.dataset_rows(dataset_id)

    async def read_rows(self, dataset_id: str) -> list[tuple[str, str]]:
        await self.get(dataset_id)
        return await asyncio.to_thread(_read_rows, self.rows_path(dataset_id))


def _write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for text, label in rows:
            out.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _read_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(obj["text"], obj["label"]) for obj in map(json.loads, f)]
