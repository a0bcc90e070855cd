"""Datasets: stream an upload to disk, validate it, store normalised rows, list and delete.

A stored dataset is a directory holding `data.jsonl`: `{"text", <target>}` rows for text (`"text_pair"` beside
`"text"` in a pair dataset), `{"image", <target>}` rows for images, where `image` is a path relative to the directory
(`images/000017.png`, the uploaded bytes) and the target is the task's (`"label"`, `"labels"` or `"target"`; see
`core.data.parsing`).

What uploads in progress may hold is bounded, so clients that stall or never finish cannot hold the server's disk and
file descriptors: each stream waits at most `limits.upload_idle_timeout_seconds` for its next message (`paced`), at
most `limits.max_concurrent_uploads` are received at once, and together they hold at most
`limits.max_upload_temp_bytes` in temp files; beyond a cap the upload is refused (RESOURCE_EXHAUSTED) and what it
staged removed.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tuneserve.core.data.conll import infer_tagging_format
from tuneserve.core.data.image_parsing import parse_image_jsonl, parse_zip
from tuneserve.core.data.parsing import ParsedDataset, ParseLimits, infer_format, parse_file
from tuneserve.core.data.tagged import TASK as TAGGING_TASK
from tuneserve.core.data.tagged import parse_tagged, stray_choice
from tuneserve.core.data.targets import Columns
from tuneserve.core.ids import new_id
from tuneserve.errors import (
    DeadlineExceeded,
    DiskFull,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from tuneserve.settings import LimitSettings
from tuneserve.store import ArtifactStore, MetadataStore
from tuneserve.tasks import DEFAULT_TASK, TASKS
from tuneserve.types import DatasetRecord, Page

Message = TypeVar("Message")


@dataclass
class _Slot:
    held: int = 0    # bytes the upload received, counted in DatasetManager._staged_bytes until it ends


MAX_SEPARATOR_CHARS = 8


@dataclass(frozen=True)
class UploadMetadata:
    """What an upload says about its file; a column left "" has its default name (`core.data.targets.Columns`)."""

    name: str
    format: str = ""          # csv | jsonl | zip | "" (from the name's extension)
    text_column: str = "text"
    label_column: str = ""    # classification: default "label"
    image_column: str = ""    # jsonl only: set, the rows hold base64 images in this field (an image dataset)
    task: str = ""            # a tuneserve.tasks name; "" = inferred from the columns
    labels_column: str = ""   # multi-label: default "labels"
    label_separator: str = ""  # multi-label CSV: default "|"
    target_column: str = ""   # regression: default "target"
    text_pair_column: str = ""  # default "text_pair"; named, every row must have it
    tokens_column: str = ""   # token classification JSONL: default "tokens"
    tags_column: str = ""     # token classification JSONL: default "tags"
    stray_i_tags: str = ""    # token classification: repair (default) | refuse

    def tagged(self) -> bool:
        """A token-classification upload: its task set, the conll format, or a .conll/.bio name."""
        return (self.task == TAGGING_TASK or self.format == "conll"
                or Path(self.name).suffix.lower() in (".conll", ".bio"))

    def check_tagged(self, fmt: str) -> None:
        """InvalidArgument naming a field a token-classification upload cannot use."""
        if self.task and self.task != TAGGING_TASK:
            raise InvalidArgument(f"task {self.task!r}: a {fmt} file of tokens and tags is token_classification")
        other = {"label_column": self.label_column, "image_column": self.image_column,
                 "labels_column": self.labels_column, "label_separator": self.label_separator,
                 "target_column": self.target_column, "text_pair_column": self.text_pair_column}
        named = [name for name, value in other.items() if value]
        if named:
            raise InvalidArgument(f"{', '.join(named)}: not for token classification (tokens_column, tags_column)")
        if fmt == "conll" and (self.tokens_column or self.tags_column):
            raise InvalidArgument("tokens_column/tags_column are for JSONL; a CoNLL file has a token and its tag a line")
        for name in ("tokens_column", "tags_column"):
            value = getattr(self, name)
            if value and not value.strip():
                raise InvalidArgument(f"{name} is only whitespace; name a field (or leave it empty for the default)")
        stray_choice(self.stray_i_tags)

    def columns(self) -> Columns:
        return Columns(
            self.image_column or self.text_column or "text", self.label_column, self.labels_column,
            self.target_column, self.text_pair_column, self.label_separator, self.task, bool(self.image_column),
        )

    def check(self, fmt: str) -> None:
        """InvalidArgument naming the field that cannot work with `fmt` or with the others."""
        if self.task and self.task not in TASKS:
            raise InvalidArgument(f"task {self.task!r} is unknown; known: {', '.join(TASKS)}")
        if len(self.label_separator) > MAX_SEPARATOR_CHARS:
            raise InvalidArgument(
                f"label_separator has {len(self.label_separator)} characters, more than {MAX_SEPARATOR_CHARS}"
            )
        if self.label_separator and fmt != "csv":
            raise InvalidArgument(f"label_separator is for multi-label CSV files; a {fmt} file holds label lists")
        columns = {"text_column": self.text_column, "label_column": self.label_column, "image_column": self.image_column,
                   "labels_column": self.labels_column, "target_column": self.target_column,
                   "text_pair_column": self.text_pair_column}
        for name, value in columns.items():
            if value and not value.strip():
                raise InvalidArgument(f"{name} is only whitespace; name a column (or leave it empty for the default)")
        tagging = [name for name in ("tokens_column", "tags_column", "stray_i_tags") if getattr(self, name)]
        if tagging:
            raise InvalidArgument(f"{', '.join(tagging)}: for token classification only (set task or the conll format)")
        named = [name for name in ("labels_column", "target_column", "text_pair_column") if columns[name]]
        if fmt == "zip" and (named or (self.task and self.task != DEFAULT_TASK)):
            raise InvalidArgument(
                f"{', '.join(named) or f'task {self.task!r}'}: a zip of class folders is a classification dataset "
                "whose folder names are the labels; upload JSONL with image_column for multi-label or regression images"
            )
        if self.image_column and fmt != "jsonl":
            raise InvalidArgument(
                f"image_column is for JSONL files with base64 images; a {fmt} dataset cannot use it "
                "(a zip of class folders needs no columns)"
            )
        if self.image_column and self.text_pair_column:
            raise InvalidArgument("text_pair_column: text pairs are for text datasets; an image dataset has none")


class DatasetManager:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore, limits: LimitSettings) -> None:
        self._store = store
        self._artifacts = artifacts
        self._limits = limits
        self._uploads = 0            # uploads being received, parsed or published
        self._staged_bytes = 0       # bytes they received so far, all together

    async def paced(self, messages: AsyncIterable[Message]) -> AsyncIterator[Message]:
        """`messages` (an upload's stream), refused with DeadlineExceeded when the next one takes longer than
        limits.upload_idle_timeout_seconds to arrive."""
        seconds = self._limits.upload_idle_timeout_seconds
        iterator = aiter(messages)
        while True:
            try:
                message = await asyncio.wait_for(anext(iterator), seconds)
            except StopAsyncIteration:
                return
            except asyncio.TimeoutError:
                raise DeadlineExceeded(
                    f"the upload sent nothing for {seconds:g} s (limit upload_idle_timeout_seconds); "
                    "it was ended and what it sent removed"
                ) from None
            yield message

    async def upload(self, meta: UploadMetadata, chunks: AsyncIterator[bytes]) -> DatasetRecord:
        with self._artifacts.map_disk_full("storing an uploaded dataset"):
            return await self._upload(meta, chunks)

    async def _upload(self, meta: UploadMetadata, chunks: AsyncIterator[bytes]) -> DatasetRecord:
        if not meta.name:
            raise InvalidArgument("metadata.name is required (usually the file name)")
        if meta.tagged():
            fmt = infer_tagging_format(meta.name, meta.format)
            meta.check_tagged(fmt)
        else:
            fmt = infer_format(meta.name, meta.format)
            meta.check(fmt)
        with self._slot() as slot:
            return await self._stage(meta, fmt, chunks, slot)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[_Slot]:
        """One of the limits.max_concurrent_uploads; its bytes count against max_upload_temp_bytes until it ends."""
        if self._uploads >= self._limits.max_concurrent_uploads:
            raise ResourceExhausted(
                f"{self._uploads} uploads are in progress (limit max_concurrent_uploads = "
                f"{self._limits.max_concurrent_uploads}); retry when one has finished"
            )
        self._uploads += 1
        slot = _Slot()
        try:
            yield slot
        finally:
            self._uploads -= 1
            self._staged_bytes -= slot.held

    async def _stage(
        self, meta: UploadMetadata, fmt: str, chunks: AsyncIterator[bytes], slot: _Slot
    ) -> DatasetRecord:
        staged = self._artifacts.temp_dir()
        try:
            raw = staged / "upload"
            size, digest = await self._receive(chunks, raw, slot)
            if size == 0:
                raise InvalidArgument("the dataset file is empty")
            # NOTE: the parsers write the normalised rows (staged/data.jsonl) as they read them
            parsed = await asyncio.to_thread(self._parse, raw, staged, fmt, meta)
            record = DatasetRecord(
                id=new_id("ds"), name=meta.name, format=fmt, modality=parsed.modality, num_rows=parsed.num_rows,
                labels=parsed.labels if parsed.labels is not None else sorted(parsed.label_counts), label_counts=parsed.label_counts,
                num_duplicates=parsed.num_duplicates, size_bytes=size, sha256=digest, create_time=time.time(),
                task=parsed.task, text_pairs=parsed.text_pairs, stats=parsed.stats,
            )
            raw.unlink()
            await asyncio.to_thread(self._artifacts.publish_dir, staged, self._artifacts.dataset_dir(record.id))
        except BaseException:
            self._artifacts.remove(staged)
            raise
        try:
            await self._store.add_dataset(record)
        except DiskFull:  # NOTE: nothing was recorded: take the files back (after a crash here, store.sweep does)
            self._artifacts.remove(self._artifacts.dataset_dir(record.id))
            raise
        return record

    def _parse(self, raw: Path, staged: Path, fmt: str, meta: UploadMetadata) -> ParsedDataset:
        limits = ParseLimits(
            self._limits.max_dataset_rows, self._limits.max_labels, self._limits.max_text_chars,
            self._limits.max_name_chars, self._limits.max_image_pixels, self._limits.max_dataset_bytes,
            self._limits.max_line_bytes,
        )
        if meta.tagged():
            return parse_tagged(
                raw, staged, fmt, limits, max_sentence_tokens=self._limits.max_sentence_tokens,
                stray=stray_choice(meta.stray_i_tags), tokens_column=meta.tokens_column or "tokens",
                tags_column=meta.tags_column or "tags",
            )
        if fmt == "zip":
            return parse_zip(raw, staged, limits)
        if fmt == "jsonl" and meta.image_column:
            return parse_image_jsonl(raw, staged, meta.columns(), limits)
        return parse_file(raw, staged, fmt, meta.columns(), limits)

    async def _receive(self, chunks: AsyncIterator[bytes], path: Path, slot: _Slot) -> tuple[int, str]:
        size, digest = 0, hashlib.sha256()
        cap = self._limits.max_upload_temp_bytes
        with open(path, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > self._limits.max_dataset_bytes:
                    raise ResourceExhausted(
                        f"dataset larger than {self._limits.max_dataset_bytes} bytes (limit max_dataset_bytes)"
                    )
                if self._staged_bytes + len(chunk) > cap:
                    raise ResourceExhausted(
                        f"the uploads in progress hold {self._staged_bytes} bytes; this one's next {len(chunk)} would "
                        f"exceed {cap} (limit max_upload_temp_bytes); retry when others have finished"
                    )
                self._staged_bytes += len(chunk)
                slot.held += len(chunk)
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
        await self._store.delete_dataset(dataset_id)  # NOTE: the record first: a full disk keeps both (DiskFull)
        with self._artifacts.map_disk_full(f"deleting dataset {dataset_id!r}"):
            self._artifacts.remove(self._artifacts.dataset_dir(dataset_id))

    def rows_path(self, dataset_id: str) -> Path:
        return self._artifacts.dataset_rows(dataset_id)

    async def read_rows(self, dataset_id: str) -> builtins.list[Row]:  # `list` is a method here
        """The dataset's rows: text (or an image path relative to `dataset_dir`), target, and the pair's second text."""
        await self.get(dataset_id)
        return await asyncio.to_thread(_read_rows, self.rows_path(dataset_id))

    def dataset_dir(self, dataset_id: str) -> Path:
        return self._artifacts.dataset_dir(dataset_id)


@dataclass(frozen=True)
class Row:
    """One stored row. `target` is what the dataset's task reads (tuneserve.tasks: `Task.target_field`): a label,
    a list of labels or a number."""

    value: str                 # the text, or the image's path relative to the dataset directory
    target: Any
    text_pair: str = ""        # pair datasets: the second text
    tokens: list[str] | None = None   # token classification: the sentence's words (`target` is the stored row)


def _read_rows(path: Path) -> list[Row]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for obj in map(json.loads, f):
            if "tokens" in obj:   # token classification: {"tokens": [...], "tags": [...]}
                rows.append(Row("", {"tokens": obj["tokens"], "tags": obj["tags"]}, tokens=list(obj["tokens"])))
                continue
            target = obj["label"] if "label" in obj else obj["labels"] if "labels" in obj else obj["target"]
            rows.append(Row(obj["text"] if "text" in obj else obj["image"], target, obj.get("text_pair", "")))
    return rows
