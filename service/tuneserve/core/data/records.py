"""The records of an uploaded CSV or JSONL file, one at a time: UTF-8 lines of bounded length, then a CSV row (with the
header's column names) or a JSON object per line. Nothing here knows what a column means (`core.data.targets` does);
every problem is `InvalidArgument` naming the line (1-based, as an editor shows it)."""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from tuneserve.errors import InvalidArgument

Record = dict[str, Any]


def decoded_lines(raw: io.BufferedReader, max_line_bytes: int) -> Iterator[str]:
    """Yield text lines, failing with the line number on the first byte sequence that is not UTF-8, or on a line
    longer than `max_line_bytes` (found reading at most that much of it)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    number = 0
    while line := raw.readline(max_line_bytes + 1):
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            raise InvalidArgument(
                f"line {number}: longer than {max_line_bytes} bytes (limit max_line_bytes); put one row per line"
            )
        try:
            yield decoder.decode(line)
        except UnicodeDecodeError as exc:
            raise InvalidArgument(
                f"line {number}: not valid UTF-8 (byte {exc.start} of the line); save the file as UTF-8"
            ) from None
    try:
        # NOTE: a file ending inside a multi-byte character: the incremental decoder holds those bytes back until told
        # the input is over, and would otherwise drop them silently
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InvalidArgument(f"line {number}: not valid UTF-8 (the file ends inside a character)") from None


def csv_records(lines: Iterator[str]) -> tuple[list[str], Iterator[tuple[int, Record]]]:
    """The header's column names (stripped) and the rows as {column: cell}, each with the line it ends on."""
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidArgument("the dataset file is empty") from None
    except csv.Error as exc:
        raise InvalidArgument(f"line 1: malformed CSV header ({exc})") from None
    columns = [c.strip() for c in header]
    return columns, _csv_rows(reader, columns)


def _csv_rows(reader: Any, columns: list[str]) -> Iterator[tuple[int, Record]]:
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidArgument(f"line {reader.line_num}: malformed CSV ({exc})") from None
        if not fields:
            continue
        if len(fields) != len(columns):
            raise InvalidArgument(
                f"line {reader.line_num}: expected {len(columns)} fields like the header, found {len(fields)}"
            )
        yield reader.line_num, dict(zip(columns, fields, strict=True))


def jsonl_records(lines: Iterator[str]) -> Iterator[tuple[int, Record]]:
    """Each non-blank line's JSON object, with its line number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except (ValueError, RecursionError):
            # NOTE: json raises these, not JSONDecodeError, for an integer of more than 4300 digits and for arrays or
            # objects nested deeper than the interpreter's recursion limit
            raise InvalidArgument(f"line {number}: not valid JSON (a number too long or nesting too deep)") from None
        if not isinstance(obj, dict):
            raise InvalidArgument(f"line {number}: expected a JSON object (one row per line)")
        yield number, obj
