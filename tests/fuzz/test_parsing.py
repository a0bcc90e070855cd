"""The dataset parser on random and nearly-right CSV/JSONL files: it returns a ParsedDataset whose rows respect the
limits, or raises InvalidArgument; nothing else (no other exception, no crash on deep JSON or huge numbers)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.fuzz.strategies import dataset_files, long_lines
from tuneserve.core.data.parsing import Columns, ParsedDataset, ParseLimits, parse_file
from tuneserve.errors import InvalidArgument

LIMITS = ParseLimits(max_rows=8, max_labels=4, max_text_chars=200, max_label_chars=32, max_line_bytes=1024)
COLUMNS = st.one_of(
    st.just(("text", "label")),
    st.sampled_from([("label", "text"), ("", "x"), ("text", "text"), (" text", "label")]),
)


@given(file=dataset_files(), columns=COLUMNS)
# NOTE: the three failures the fuzzer found, kept as explicit examples
@example(file=("jsonl", b'{"text": "a", "label": ' + b"9" * 5000 + b"}\n"), columns=("text", "label"))
@example(file=("jsonl", b"[" * 5000), columns=("text", "label"))
@example(file=("csv", b"text,label\na,x\nb,y\xc3"), columns=("text", "label"))
def test_parse_file_returns_rows_or_invalid_argument(file: tuple[str, bytes], columns: tuple[str, str]) -> None:
    _check(file, columns)


@given(file=long_lines())
def test_lines_around_the_line_limit(file: tuple[str, bytes]) -> None:
    _check(file, ("text", "label"))


def _check(file: tuple[str, bytes], columns: tuple[str, str]) -> None:
    fmt, content = file
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "upload", Path(tmp) / "staged"
        path.write_bytes(content)
        try:
            parsed = parse_file(path, out, fmt, Columns(columns[0], columns[1]), LIMITS)
        except InvalidArgument as exc:
            assert exc.message
            event("InvalidArgument: " + re.sub(r"^line \d+: ", "", exc.message)[:32])
            return
        lines = (out / "data.jsonl").read_text("utf-8").split("\n")[:-1]
        rows = [(row["text"], row["label"]) for row in map(json.loads, lines)]
    event("parsed")
    assert isinstance(parsed, ParsedDataset)
    assert 0 < parsed.num_rows == len(rows) <= LIMITS.max_rows
    assert 2 <= len(parsed.label_counts) <= LIMITS.max_labels
    assert parsed.num_duplicates == len(rows) - len({text for text, _ in rows})
    for text, label in rows:
        assert text and text == text.strip() and len(text) <= LIMITS.max_text_chars
        assert label and len(label) <= LIMITS.max_label_chars
