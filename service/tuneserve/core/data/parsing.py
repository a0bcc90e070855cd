"""Parse and validate an uploaded labelled text file (CSV or JSONL) into normalised rows. Image datasets (a zip of
class folders, JSONL with base64 images) are parsed by `tuneserve.core.data.image_parsing`, which shares the line reading
and label checks here.

Every problem is reported as `InvalidArgument` naming the line (1-based, as an editor shows it) or the column, so
the caller knows what to fix.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tuneserve.errors import InvalidArgument

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".zip": "zip"}


@dataclass(frozen=True)
class ParseLimits:
    max_rows: int
    max_labels: int
    max_text_chars: int
    max_label_chars: int = 256
    max_image_pixels: int = 25_000_000
    max_bytes: int = 512 * 1024 * 1024      # uncompressed size of a zip's entries, all together


@dataclass
class ParsedDataset:
    rows: list[tuple[str, str]]          # (text, label)
    label_counts: dict[str, int]
    num_duplicates: int


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


def parse_file(path: Path, fmt: str, text_column: str, label_column: str, limits: ParseLimits) -> ParsedDataset:
    with open(path, "rb") as raw:
        lines = decoded_lines(raw)
        if fmt == "csv":
            rows = list(_check_rows(_csv_rows(lines, text_column, label_column), limits))
        elif fmt == "jsonl":
            rows = list(_check_rows(jsonl_rows(lines, text_column, label_column), limits))
        else:
            raise InvalidArgument(f"unsupported dataset format {fmt!r} for text: use csv or jsonl")
    return _summarise([(text, label) for _, text, label in rows], limits)


def decoded_lines(raw: io.BufferedReader) -> Iterator[str]:
    """Yield text lines, failing with the line number on the first byte sequence that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    number = 0
    for number, line in enumerate(raw, start=1):
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


def _csv_rows(lines: Iterator[str], text_column: str, label_column: str) -> Iterator[tuple[int, str, str]]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidArgument("the dataset file is empty") from None
    except csv.Error as exc:
        raise InvalidArgument(f"line 1: malformed CSV header ({exc})") from None
    columns = [c.strip() for c in header]
    for wanted in (text_column, label_column):
        if wanted not in columns:
            raise InvalidArgument(
                f"line 1: missing column {wanted!r} in the CSV header (found: {', '.join(map(repr, columns))})"
            )
    ti, li = columns.index(text_column), columns.index(label_column)
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
        yield reader.line_num, fields[ti], fields[li]


def jsonl_rows(lines: Iterator[str], text_column: str, label_column: str) -> Iterator[tuple[int, str, str]]:
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
            raise InvalidArgument(f"line {number}: expected a JSON object with {text_column!r} and {label_column!r}")
        for key in (text_column, label_column):
            if key not in obj:
                raise InvalidArgument(f"line {number}: missing field {key!r}")
        text, label = obj[text_column], obj[label_column]
        if not isinstance(text, str):
            raise InvalidArgument(f"line {number}: field {text_column!r} must be a string")
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise InvalidArgument(f"line {number}: field {label_column!r} must be a string or an integer")
        yield number, text, str(label)


def _check_rows(rows: Iterator[tuple[int, str, str]], limits: ParseLimits) -> Iterator[tuple[int, str, str]]:
    for count, (number, text, label) in enumerate(rows, start=1):
        if count > limits.max_rows:
            raise InvalidArgument(f"line {number}: more than {limits.max_rows} rows (limit max_dataset_rows)")
        text = text.strip()
        if not text:
            raise InvalidArgument(f"line {number}: empty text")
        label = check_label(label, f"line {number}", limits)
        if len(text) > limits.max_text_chars:
            raise InvalidArgument(
                f"line {number}: text has {len(text)} characters, more than {limits.max_text_chars} "
                "(limit max_text_chars)"
            )
        yield number, text, label


def check_label(label: str, where: str, limits: ParseLimits) -> str:
    """The label stripped of surrounding whitespace; InvalidArgument naming `where` when empty or too long."""
    label = label.strip()
    if not label:
        raise InvalidArgument(f"{where}: empty label")
    if len(label) > limits.max_label_chars:
        raise InvalidArgument(
            f"{where}: label has {len(label)} characters, more than {limits.max_label_chars} (limit max_name_chars)"
        )
    return label


def label_counts(labels: list[str], limits: ParseLimits) -> dict[str, int]:
    """Rows per label, sorted by label; InvalidArgument for an empty dataset, one label, or too many."""
    if not labels:
        raise InvalidArgument("the dataset has no rows")
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts))
        raise InvalidArgument(f"a classification dataset needs at least 2 distinct labels; found only {only!r}")
    if len(counts) > limits.max_labels:
        raise InvalidArgument(f"{len(counts)} distinct labels, more than {limits.max_labels} (limit max_labels)")
    return dict(sorted(counts.items()))


def _summarise(rows: list[tuple[str, str]], limits: ParseLimits) -> ParsedDataset:
    counts = label_counts([label for _, label in rows], limits)
    distinct_texts = len({text for text, _ in rows})
    return ParsedDataset(rows, counts, len(rows) - distinct_texts)
