"""Text dataset parsing streams: a line is bounded before it is held whole, rows go to data.jsonl as they are read,
and labels may not hold control characters."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from tests.hostile_files import long_line_jsonl, tiny_rows_csv
from tuneserve.core.data.parsing import Columns, ParseLimits, parse_file
from tuneserve.errors import InvalidArgument

LIMITS = ParseLimits(max_rows=1_000_000, max_labels=4, max_text_chars=1000, max_label_chars=16, max_line_bytes=4096)


def _peak(call: object) -> int:
    tracemalloc.start()
    try:
        call()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_long_line_is_refused_reading_no_more_than_the_limit(tmp_path: Path) -> None:
    line = long_line_jsonl(tmp_path / "a.jsonl", 8 << 20)

    def parse() -> None:
        with pytest.raises(InvalidArgument, match=r"^line 1: longer than 4096 bytes \(limit max_line_bytes\)"):
            parse_file(line, tmp_path / "out", "jsonl", Columns(), LIMITS)

    assert _peak(parse) < 1 << 20


def test_the_limit_is_the_line_without_its_newline(tmp_path: Path) -> None:
    row = "a" * 4094 + ",x"
    path = tmp_path / "a.csv"
    path.write_text(f"text,label\n{row}\nb,y\n")
    limits = ParseLimits(**{**LIMITS.__dict__, "max_text_chars": 5000})
    assert parse_file(path, tmp_path / "out", "csv", Columns(), limits).num_rows == 2
    path.write_text(f"text,label\nb,y\na{row}\n")
    with pytest.raises(InvalidArgument, match=r"^line 3: longer than 4096 bytes"):
        parse_file(path, tmp_path / "out2", "csv", Columns(), limits)


def test_rows_stream_to_data_jsonl(tmp_path: Path) -> None:
    """50,000 tiny rows: held as values, they cost ~10 MB; streamed, 8 bytes a row for the duplicate count."""
    path = tiny_rows_csv(tmp_path / "a.csv", 50_000)
    with open(path, "a") as out:
        out.write("t0000007,b\n")   # a duplicate text (with another label)
    parsed = None

    def parse() -> None:
        nonlocal parsed
        parsed = parse_file(path, tmp_path / "out", "csv", Columns(), LIMITS)

    assert _peak(parse) < 2 << 20
    assert parsed is not None
    assert (parsed.num_rows, parsed.label_counts, parsed.num_duplicates) == (50_001, {"a": 25_000, "b": 25_001}, 1)
    with open(tmp_path / "out" / "data.jsonl", encoding="utf-8") as rows:
        assert json.loads(next(rows)) == {"text": "t0000000", "label": "a"}


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("red\x1b[31m", r"line 2: label holds U\+001B \(ESCAPE\) at character 3"),
        ("a\rb", r"line 2: label holds U\+000D \(CARRIAGE RETURN\)"),
        ("evil\u202e", r"line 2: label holds U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"),
        ("\x9b2J", r"line 2: label holds U\+009B"),
    ],
)
def test_labels_with_control_characters_are_refused(tmp_path: Path, label: str, message: str) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "a", "label": "ok"}) + "\n" + json.dumps({"text": "b", "label": label}) + "\n")
    with pytest.raises(InvalidArgument, match=message):
        parse_file(path, tmp_path / "out", "jsonl", Columns(), LIMITS)


def test_too_many_labels_are_refused_as_they_come(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("text,label\n" + "".join(f"t{i},l{i}\n" for i in range(1000)))
    with pytest.raises(InvalidArgument, match=r"^line 6: 5 distinct labels, more than 4 \(limit max_labels\)"):
        parse_file(path, tmp_path / "out", "csv", Columns(), LIMITS)


def test_an_unpaired_surrogate_in_a_text_is_refused(tmp_path: Path) -> None:
    """Found writing rows as they come: json decodes "\\ud800" to a str that UTF-8 cannot encode."""
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b\\ud800", "label": "y"}\n')
    with pytest.raises(InvalidArgument, match="line 2: the text holds an unpaired surrogate"):
        parse_file(path, tmp_path / "out", "jsonl", Columns(), LIMITS)
