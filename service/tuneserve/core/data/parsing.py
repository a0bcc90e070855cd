"""Parse and validate an uploaded text file (CSV or JSONL), writing its normalised rows to `data.jsonl` in the staged
dataset directory as they are read. Image datasets (a zip of class folders, JSONL with base64 images) are parsed by
`tuneserve.core.data.image_parsing`, which shares the line reading, the row reader and the row writer here.

The stored rows (`data.jsonl`, one JSON object a line) hold the value and the target as the dataset's task names it
(`Task.target_field`): `{"text", "label"}` (classification), `{"text", "labels": [...]}` (multi-label, maybe empty),
`{"text", "target": float}` (regression), with `"text_pair"` beside `"text"` in a pair dataset; image rows hold
`"image"` (a path in the dataset directory) instead of `"text"`. Which columns are read is `core.data.targets`.

Parsing streams: a line is read up to `max_line_bytes` (a longer one is refused before it is held whole), and a row
is written out once checked, so memory holds one line, the label counts and 16 bytes per row at most (a digest to
count duplicates, and the number the dataset statistics summarise), never the file or its rows. Every problem is
reported as `InvalidArgument` naming the line (1-based, as an editor shows it) or the column.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from tuneserve.core.data.limits import ParseLimits, check_label
from tuneserve.core.data.records import csv_records, decoded_lines, jsonl_records
from tuneserve.core.data.targets import Columns, RowReader, Shape
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import Task, get_task

__all__ = [
    "FORMATS", "ROWS_FILE", "Columns", "ParseLimits", "ParsedDataset", "RowWriter", "check_label", "decoded_lines",
    "infer_format", "label_counts", "parse_file",
]

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".zip": "zip"}
ROWS_FILE = "data.jsonl"


@dataclass
class ParsedDataset:
    """What parsing wrote to `<out_dir>/data.jsonl`."""

    num_rows: int
    label_counts: dict[str, int]         # rows per label (multi-label: rows carrying it; regression: none)
    num_duplicates: int                  # rows whose text (or pair, or image bytes) repeats an earlier row's
    modality: str = "text"
    task: str = "classification"
    text_pairs: bool = False
    stats: dict[str, Any] = field(default_factory=dict)   # Task.dataset_stats
    labels: list[str] | None = None      # the dataset's labels in the model's order; None = the counted labels, sorted


class RowWriter:
    """Writes checked rows to `<out_dir>/data.jsonl` as they come, counting labels (refused at once past max_labels),
    duplicates (from an 8-byte digest of each row's text, pair or image, not the values themselves) and the number per
    row the task's statistics summarise (`Task.stat_value`)."""

    def __init__(self, out_dir: Path, modality: str, limits: ParseLimits) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self._out = open(out_dir / ROWS_FILE, "w", encoding="utf-8")  # noqa: SIM115 (closed by __exit__)
        self._modality = modality
        self._limits = limits
        self._counts: Counter[str] = Counter()
        self._digests = array("Q")
        self._values = array("d")
        self._task: Task = get_task("")
        self._pairs = False

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._out.close()

    def add(
        self, value: str, target: Any, where: str, shape: Shape | None = None, *, text_pair: str = "",
        content: bytes | None = None,
    ) -> None:
        """One row; `shape` None: a classification row (a zip's). `content`: what makes two rows duplicates (an image's
        bytes); by default the value's (and the pair's) UTF-8 bytes."""
        if shape is not None:
            self._task, self._pairs = shape.task, shape.pairs
        for label in self._task.label_set(target):
            if label not in self._counts and len(self._counts) >= self._limits.max_labels:
                raise InvalidArgument(
                    f"{where}: {len(self._counts) + 1} distinct labels, more than {self._limits.max_labels} "
                    "(limit max_labels)"
                )
            self._counts[label] += 1
        if content is None:
            content = self._encoded(value, where) + (b"\0" + self._encoded(text_pair, where) if self._pairs else b"")
        measure = self._task.stat_value(target)
        if measure is not None:
            self._values.append(measure)
        self._digests.append(int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little"))
        row = {self._modality: value, "text_pair": text_pair} if self._pairs else {self._modality: value}
        row[self._task.target_field] = target
        self._out.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _encoded(self, text: str, where: str) -> bytes:
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{where}: the {self._modality} holds an unpaired surrogate (such as "
                                  "\\ud800), which is not Unicode text") from None

    def result(self) -> ParsedDataset:
        rows = len(self._digests)
        if not rows:
            raise InvalidArgument("the dataset has no rows")
        counts = label_counts(self._counts, self._limits, self._task)
        distinct = len(np.unique(np.frombuffer(self._digests, dtype=np.uint64)))
        stats = self._task.dataset_stats(np.frombuffer(self._values, dtype=np.float64))
        return ParsedDataset(
            rows, counts, rows - distinct, self._modality, self._task.name, self._pairs, stats
        )


def infer_format(name: str, declared: str) -> str:
    if declared:
        return declared
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidArgument(
            f"cannot tell the dataset format from the name {name!r}: set format (csv, jsonl or zip) or use a "
            f"{', '.join(FORMATS)} file name"
        )
    return FORMATS[suffix]


def parse_file(path: Path, out_dir: Path, fmt: str, columns: Columns, limits: ParseLimits) -> ParsedDataset:
    if fmt not in ("csv", "jsonl"):
        raise InvalidArgument(f"unsupported dataset format {fmt!r} for text: use csv or jsonl")
    with open(path, "rb") as raw, RowWriter(out_dir, "text", limits) as writer:
        lines = decoded_lines(raw, limits.max_line_bytes)
        if fmt == "csv":
            header, records = csv_records(lines)
            reader = RowReader(columns, limits, header)
        else:
            reader, records = RowReader(columns, limits), jsonl_records(lines)
        for row in reader.rows(records):
            writer.add(row.value, row.target, f"line {row.number}", reader.shape, text_pair=row.text_pair)
    return writer.result()


def label_counts(counts: Counter[str], limits: ParseLimits, task: Task) -> dict[str, int]:
    """Rows per label, sorted by label; InvalidArgument for fewer labels than the task needs, or too many."""
    if len(counts) < task.min_labels:
        found = f"only {next(iter(counts))!r}" if counts else "none"
        plural = "s" if task.min_labels > 1 else ""
        raise InvalidArgument(
            f"a {task.name} dataset needs at least {task.min_labels} distinct label{plural}; found {found}"
        )
    if len(counts) > limits.max_labels:
        raise InvalidArgument(f"{len(counts)} distinct labels, more than {limits.max_labels} (limit max_labels)")
    return dict(sorted(counts.items()))
