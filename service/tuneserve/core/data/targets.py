"""What each row of an uploaded CSV or JSONL file holds, in the one shape the whole file has: its value (a text, or a
base64 image), the pair's second text when the file holds text pairs, and its target as its task stores it.

The shape is decided once, from the CSV header or the first JSONL row: the task is the one set at upload, else the one
whose target column was named at upload, else the one whose default column is there (`labels`: multi-label, `target`:
regression, else classification); a `text_pair` column makes a pair dataset. Every later JSONL row must have the same
shape: a row with another task's target, or one side of a pair missing, is refused naming its line. Each target is
read by its task (`Task.read_target`), which says what is wrong with a value; labels are checked here (`check_label`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from tuneserve.core.data.limits import ParseLimits, check_label
from tuneserve.core.data.records import Record
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import DEFAULT_TASK, TASKS, Task, get_task

DEFAULT_SEPARATOR = "|"
DEFAULT_PAIR_COLUMN = "text_pair"


@dataclass(frozen=True)
class Columns:
    """Where an upload's rows hold what; "" = the default name. Naming a task's target column (label, labels, target)
    picks that task when `task` is unset."""

    value: str = "text"        # the text, or (image JSONL) the base64 image
    label: str = ""            # classification: default "label"
    labels: str = ""           # multi-label: default "labels"
    target: str = ""           # regression: default "target"
    text_pair: str = ""        # default "text_pair"; named, it must be there
    separator: str = ""        # multi-label CSV: default "|"
    task: str = ""             # a tuneserve.tasks name; "" = inferred
    images: bool = False       # the value is a base64 image: no pairs, no text checks

    def target_column(self, task: Task) -> str:
        return self._named(task) or task.target_field

    def _named(self, task: Task) -> str:
        return {"label": self.label, "labels": self.labels, "target": self.target}.get(task.target_field, "")

    @property
    def inferred(self) -> bool:
        """The task comes from the default column names (none set, no target column named)."""
        return not (self.task or self.label or self.labels or self.target)

    @property
    def pair_column(self) -> str:
        return self.text_pair or DEFAULT_PAIR_COLUMN

    def decide(self, keys: Collection[str], where: str, missing: str) -> Shape:
        """The shape of a file whose CSV header (or first JSONL row) has `keys`; `missing` is appended to a
        missing-column message."""
        kind = "column" if missing else "field"
        if self.value not in keys:
            raise InvalidArgument(f"{where}: missing {kind} {self.value!r}{missing}")
        task = self._task(keys, where, kind)
        column = self.target_column(task)
        if column not in keys:
            hint = "" if self.task or self._named(task) else (
                " (a multi-label file has 'labels', a regression file 'target'; or set the task and its column)"
            )
            raise InvalidArgument(f"{where}: missing {kind} {column!r}{missing}{hint}")
        pairs = self.pair_column in keys
        if self.text_pair and not pairs:
            raise InvalidArgument(f"{where}: missing {kind} {self.pair_column!r} (text_pair_column){missing}")
        if pairs and self.images:
            raise InvalidArgument(
                f"{where}: {kind} {self.pair_column!r}: text pairs are for text datasets; an image dataset has none"
            )
        return Shape(task, column, self.pair_column if pairs else "", where)

    def _task(self, keys: Collection[str], where: str, kind: str) -> Task:
        if self.task:
            return get_task(self.task)
        # NOTE: a per-token task (token classification) is parsed by core.data.tagged, never from these rows
        tasks = [task for task in TASKS.values() if not task.per_token]
        named = [task for task in tasks if self._named(task)]
        candidates = named or [task for task in tasks if task.target_field in keys]
        if len(candidates) > 1:
            present = [task for task in candidates if self.target_column(task) in keys]
            if len(present) != 1:
                found = ", ".join(f"{self.target_column(t)!r} ({t.name})" for t in present or candidates)
                raise InvalidArgument(
                    f"{where}: {kind}s {found} are the targets of different tasks; one file holds one task: set the "
                    "task at upload (--task) to choose"
                )
            return present[0]
        return candidates[0] if candidates else get_task(DEFAULT_TASK)


@dataclass(frozen=True)
class Shape:
    task: Task
    column: str          # where each row's target is
    pair_column: str     # "" = single texts
    decided_at: str      # "line 1": where the shape was read from

    @property
    def pairs(self) -> bool:
        return bool(self.pair_column)


@dataclass(frozen=True)
class Row:
    number: int
    value: str           # stripped text, or the base64 image as given
    target: Any          # as the task stores it
    text_pair: str = ""


class RowReader:
    """Reads the records of one file into `Row`s, after the row limit and every check of the values and target.
    `header`: a CSV file's columns (the shape is decided from them, and cells are read as CSV text); None: JSONL
    (decided from the first row)."""

    def __init__(self, columns: Columns, limits: ParseLimits, header: list[str] | None = None) -> None:
        self._columns = columns
        self._limits = limits
        self._csv = header is not None
        self.shape: Shape | None = None
        if header is not None:
            found = f" in the CSV header (found: {', '.join(map(repr, header))})"
            self.shape = columns.decide(header, "line 1", found)

    def rows(self, records: Iterator[tuple[int, Record]]) -> Iterator[Row]:
        for count, (number, record) in enumerate(records, start=1):
            where = f"line {number}"
            if count > self._limits.max_rows:
                raise InvalidArgument(f"{where}: more than {self._limits.max_rows} rows (limit max_dataset_rows)")
            if self.shape is None:
                self.shape = self._columns.decide(record.keys(), where, "")
            elif not self._csv:
                self._check_same_shape(record, self.shape, where)
            yield self._read(number, record, self.shape, where)

    def _read(self, number: int, record: Record, shape: Shape, where: str) -> Row:
        value = self._string(record, self._columns.value, where)
        if not self._columns.images:
            value = self._text(value, where, "text")
        pair = ""
        if shape.pairs:
            if shape.pair_column not in record:
                raise InvalidArgument(
                    f"{where}: missing field {shape.pair_column!r}: {shape.decided_at} has it, and a pair dataset "
                    "needs both texts on every row"
                )
            pair = self._text(self._string(record, shape.pair_column, where), where, "text_pair")
        separator = (self._columns.separator or DEFAULT_SEPARATOR) if self._csv else None
        check = functools.partial(check_label, where=where, limits=self._limits)
        try:
            target = shape.task.read_target(record[shape.column], shape.column, separator, check)
        except ValueError as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        return Row(number, value, target, pair)

    def _check_same_shape(self, record: Record, shape: Shape, where: str) -> None:
        """One JSONL row against the file's shape: no other task's target (unless the task was set), both texts of a
        pair or neither."""
        if self._columns.inferred:
            for task in TASKS.values():
                if task.per_token:
                    continue
                column = self._columns.target_column(task)
                if task is not shape.task and column != shape.column and column in record:
                    raise InvalidArgument(
                        f"{where}: has {column!r} (a {task.name} target) where {shape.decided_at} has {shape.column!r} "
                        f"({shape.task.name}); one file holds one task"
                    )
        if shape.column not in record:
            raise InvalidArgument(f"{where}: missing field {shape.column!r}")
        if not shape.pairs and self._columns.pair_column in record:
            raise InvalidArgument(
                f"{where}: has {self._columns.pair_column!r} where {shape.decided_at} has none: a pair dataset needs "
                "both texts on every row"
            )

    @staticmethod
    def _string(record: Record, column: str, where: str) -> str:
        if column not in record:
            raise InvalidArgument(f"{where}: missing field {column!r}")
        value = record[column]
        if not isinstance(value, str):
            raise InvalidArgument(f"{where}: field {column!r} must be a string")
        return value

    def _text(self, text: str, where: str, what: str) -> str:
        text = text.strip()
        if not text:
            raise InvalidArgument(f"{where}: empty {what}" + (" (a pair needs both texts)" if what != "text" else ""))
        if len(text) > self._limits.max_text_chars:
            raise InvalidArgument(
                f"{where}: {what} has {len(text)} characters, more than {self._limits.max_text_chars} "
                "(limit max_text_chars)"
            )
        return text
