"""Token-classification upload parsing: CoNLL and JSONL (columns renamed), the stored
IOB2 rows and the tagging statistics, stray I- tags repaired or refused, and bad input refused naming its line with
nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneserve.core.data.conll import ConllLimits
from tuneserve.core.data.limits import ParseLimits
from tuneserve.core.data.tagged import parse_tagged
from tuneserve.errors import InvalidArgument

LIMITS = ParseLimits(max_rows=1000, max_labels=10, max_text_chars=100, max_label_chars=20, max_line_bytes=4096)


def parse(tmp_path: Path, name: str, content: str, fmt: str, **kwargs: object) -> tuple[object, list[dict]]:
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / f"out-{name}"
    parsed = parse_tagged(path, out, fmt, LIMITS, max_sentence_tokens=ConllLimits().max_sentence_tokens, **kwargs)  # type: ignore[arg-type]
    return parsed, [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]


def test_conll_bioes_is_stored_as_iob2_with_statistics(tmp_path: Path) -> None:
    text = "-DOCSTART- O\n\nJustin B-PER\nBieber E-PER\nsang O\n\nin O\nS-LOC S-LOC\n"
    parsed, rows = parse(tmp_path, "a.conll", text, "conll")
    assert rows == [{"tokens": ["Justin", "Bieber", "sang"], "tags": ["B-PER", "I-PER", "O"]},
                    {"tokens": ["in", "S-LOC"], "tags": ["O", "B-LOC"]}]
    assert parsed.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]  # type: ignore[attr-defined]
    assert parsed.label_counts == {"LOC": 1, "PER": 1}  # type: ignore[attr-defined]
    assert parsed.stats == {"tagging": {  # type: ignore[attr-defined]
        "sentences": 2, "tokens": 5, "scheme": "BIOES", "repaired_tags": 0, "max_sentence_tokens": 3}}


def test_stray_i_tags_are_repaired_or_refused_naming_the_line(tmp_path: Path) -> None:
    text = "a O\nb I-PER\n"
    parsed, rows = parse(tmp_path, "a.conll", text, "conll")
    assert rows[0]["tags"] == ["O", "B-PER"] and parsed.stats["tagging"]["repaired_tags"] == 1  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match="line 2"):
        parse(tmp_path, "b.conll", text, "conll", stray="refuse")


def test_jsonl_with_renamed_columns_and_bad_rows(tmp_path: Path) -> None:
    good = json.dumps({"words": ["Ada", "wrote"], "ner": ["B-PER", "O"]}) + "\n"
    _, rows = parse(tmp_path, "a.jsonl", good, "jsonl", tokens_column="words", tags_column="ner")
    assert rows == [{"tokens": ["Ada", "wrote"], "tags": ["B-PER", "O"]}]
    bad = good + json.dumps({"words": ["x"], "ner": ["O", "O"]}) + "\n"
    with pytest.raises(InvalidArgument, match="line 2: 1 tokens but 2 tags"):
        parse(tmp_path, "b.jsonl", bad, "jsonl", tokens_column="words", tags_column="ner")
    with pytest.raises(InvalidArgument, match="no entity"):
        parse(tmp_path, "c.jsonl", json.dumps({"tokens": ["x"], "tags": ["O"]}) + "\n", "jsonl")
