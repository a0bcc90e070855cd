"""Parse and validate an uploaded labelled text file (CSV or JSONL), writing its normalised rows to `data.jsonl` in
the staged dataset directory as they are read. Image datasets (a zip of class folders, JSONL with base64 images) are
parsed by `tuneserve.core.data.image_parsing`, which shares the line reading, the row writer and the label checks here.

Parsing streams: a line is read up to `max_line_bytes` (a longer one is refused before it is held whole), and a row
is written out once checked, so memory holds one line, the label counts and 8 bytes per row (to count duplicates),
never the file or its rows. Every problem is reported as `InvalidArgument` naming the line (1-based, as an editor
shows it) or the column, so the caller knows what to fix.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from tuneserve.core.names import unprintable
from tuneserve.errors import InvalidArgument

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".zip": "zip"}
ROWS_FILE = "data.jsonl"


@dataclass(frozen=True)
class ParseLimits:
    max_rows: int
    max_labels: int
    max_text_chars: int
    max_label_chars: int = 256
    max_image_pixels: int = 25_000_000
    max_bytes: int = 512 * 1024 * 1024      # uncompressed size of a zip's entries, all together
    max_line_bytes: int = 16 * 1024 * 1024  # one line of a CSV or JSONL file


@dataclass
class ParsedDataset:
    """What parsing wrote to `<out_dir>/data.jsonl`: {modality: value, "label": label} rows."""

    num_rows: int
    label_counts: dict[str, int]
    num_duplicates: int                  # rows whose text (or image bytes) repeats an earlier row's
    modality: str = "text"


class RowWriter:
    """Writes checked rows to `<out_dir>/data.jsonl` as they come, counting labels (refused at once past max_labels)
    and duplicates (from an 8-byte digest of each row's text or image, not the values themselves)."""

    def __init__(self, out_dir: Path, modality: str, limits: ParseLimits) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self._out = open(out_dir / ROWS_FILE, "w", encoding="utf-8")  # noqa: SIM115 (closed by __exit__)
        self._modality = modality
        self._limits = limits
        self._counts: Counter[str] = Counter()
        self._digests = array("Q")

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._out.close()

    def add(self, value: str, label: str, where: str, content: bytes | None = None) -> None:
        """`content`: what makes two rows duplicates (an image's bytes); by default the value's UTF-8 bytes."""
        if label not in self._counts and len(self._counts) >= self._limits.max_labels:
            raise InvalidArgument(
                f"{where}: {len(self._counts) + 1} distinct labels, more than {self._limits.max_labels} "
                "(limit max_labels)"
            )
        if content is None:
            try:
                content = value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgument(f"{where}: the {self._modality} holds an unpaired surrogate (such as "
                                      "\\ud800), which is not Unicode text") from None
        self._counts[label] += 1
        self._digests.append(int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little"))
        self._out.write(json.dumps({self._modality: value, "label": label}, ensure_ascii=False) + "\n")

    def result(self) -> ParsedDataset:
        counts = label_counts(self._counts, self._limits)
        distinct = len(np.unique(np.frombuffer(self._digests, dtype=np.uint64)))
        return ParsedDataset(len(self._digests), counts, len(self._digests) - distinct, self._modality)


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


def parse_file(
    path: Path, out_dir: Path, fmt: str, text_column: str, label_column: str, limits: ParseLimits
) -> ParsedDataset:
    if fmt not in ("csv", "jsonl"):
        raise InvalidArgument(f"unsupported dataset format {fmt!r} for text: use csv or jsonl")
    with open(path, "rb") as raw, RowWriter(out_dir, "text", limits) as writer:
        lines = decoded_lines(raw, limits.max_line_bytes)
        if fmt == "csv":
            rows = _csv_rows(lines, text_column, label_column)
        else:
            rows = jsonl_rows(lines, text_column, label_column)
        for number, text, label in _check_rows(rows, limits):
            writer.add(text, label, f"line {number}")
    return writer.result()


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
    """The label stripped of surrounding whitespace; InvalidArgument naming `where` when empty, too long, or holding
    a control character (`core.names`)."""
    label = label.strip()
    if not label:
        raise InvalidArgument(f"{where}: empty label")
    if len(label) > limits.max_label_chars:
        raise InvalidArgument(
            f"{where}: label has {len(label)} characters, more than {limits.max_label_chars} (limit max_name_chars)"
        )
    bad = unprintable(label)
    if bad is not None:
        raise InvalidArgument(f"{where}: label holds {bad}; labels may not hold control characters")
    return label


def label_counts(counts: Counter[str], limits: ParseLimits) -> dict[str, int]:
    """Rows per label, sorted by label; InvalidArgument for an empty dataset, one label, or too many."""
    if not counts:
        raise InvalidArgument("the dataset has no rows")
    if len(counts) < 2:
        only = next(iter(counts))
        raise InvalidArgument(f"a classification dataset needs at least 2 distinct labels; found only {only!r}")
    if len(counts) > limits.max_labels:
        raise InvalidArgument(f"{len(counts)} distinct labels, more than {limits.max_labels} (limit max_labels)")
    return dict(sorted(counts.items()))
