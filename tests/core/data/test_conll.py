"""Token-classification uploads: CoNLL text and JSONL sentences come out with the lines they came from, and every
malformed line is refused naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneserve.core.data.conll import (
    ConllLimits,
    Sentence,
    conll_sentences,
    infer_tagging_format,
    jsonl_sentences,
    read_sentences,
)
from tuneserve.errors import InvalidArgument

LIMITS = ConllLimits(max_token_chars=20, max_tag_chars=12, max_sentence_tokens=6, max_line_bytes=4096)


def _conll(text: str, limits: ConllLimits = LIMITS) -> list[Sentence]:
    return list(conll_sentences(iter(text.splitlines(keepends=True)), limits))


def _jsonl(rows: list[object], **columns: str) -> list[Sentence]:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    return list(jsonl_sentences(iter(line + "\n" for line in lines), LIMITS, **columns))


def _shape(sentences: list[Sentence]) -> list[tuple[list[str], list[str], list[int]]]:
    return [(s.tokens, s.tags, s.lines) for s in sentences]


# -- CoNLL text -----------------------------------------------------------------------------------------------------

CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_2003_columns_the_token_first_the_tag_last_docstart_skipped() -> None:
    assert _shape(_conll(CONLL_2003)) == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"], [3, 4, 5]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"], [7, 8]),
    ]


def test_trailing_blank_lines_several_blank_lines_and_no_final_newline() -> None:
    text = "\n\nA O\nB B-X\n\n\n\n  \nC I-X\n\n\n"
    assert _shape(_conll(text)) == [(["A", "B"], ["O", "B-X"], [3, 4]), (["C"], ["I-X"], [9])]
    assert _shape(_conll("A O\nB O")) == [(["A", "B"], ["O", "O"], [1, 2])]


def test_crlf_line_ends() -> None:
    assert _shape(_conll("A\tO\r\nB B-X\r\n\r\nC O\r\n")) == [(["A", "B"], ["O", "B-X"], [1, 2]), (["C"], ["O"], [4])]


def test_a_tab_line_splits_on_tabs_so_a_token_may_hold_spaces() -> None:
    sentences = _conll("New York\tNNP\tB-LOC\nis  VBZ   O\n")
    assert _shape(sentences) == [(["New York", "is"], ["B-LOC", "O"], [1, 2])]


def test_docstart_ends_a_sentence_even_without_a_blank_line() -> None:
    assert _shape(_conll("A O\n-DOCSTART- O\nB O\n")) == [(["A"], ["O"], [1]), (["B"], ["O"], [3])]


@pytest.mark.parametrize("line", ["Peter\n", "Peter \n", "Peter\t\n"])
def test_a_line_with_no_tag_is_refused_naming_it(line: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^line 3: no tag; put the token, then its tag in the last column"):
        _conll("A O\n\n" + line)


def test_an_empty_token_column_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"^line 2: the token \(first column\) is empty"):
        _conll("A O\n\tO\n")


def test_limits_name_the_line() -> None:
    with pytest.raises(InvalidArgument, match=r"^line 2: a token of 21 characters, more than 20 \(limit max_token_chars\)"):
        _conll("A O\n" + "x" * 21 + " O\n")
    with pytest.raises(InvalidArgument, match=r"^line 1: a tag of 13 characters, more than 12 \(limit max_tag_chars\)"):
        _conll("A B-" + "X" * 11 + "\n")
    with pytest.raises(InvalidArgument, match=r"^line 9: the sentence that starts at line 3 has more than 6 tokens "
                                              r"\(limit max_sentence_tokens\); is a blank line missing"):
        _conll("A O\n\n" + "w O\n" * 7)


def test_a_tag_with_a_control_character_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"^line 1: the tag holds U\+001B \(ESCAPE\)"):
        _conll("A B-\x1b[31m\n")


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- O\n\n"])
def test_a_file_without_sentences_is_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="holds no sentences"):
        _conll(text)


def test_sentences_stream_before_a_later_bad_line_is_read() -> None:
    read: list[int] = []

    def lines() -> Iterator[str]:
        for number, line in enumerate(["A O\n", "\n", "B\n", "never O\n"], start=1):
            read.append(number)
            yield line

    sentences = conll_sentences(lines(), LIMITS)
    assert next(sentences).tokens == ["A"]
    assert read == [1, 2]
    with pytest.raises(InvalidArgument, match="^line 3: no tag"):
        next(sentences)
    assert read == [1, 2, 3]


# -- JSONL ----------------------------------------------------------------------------------------------------------

def test_jsonl_sentences_with_their_lines_blank_lines_skipped() -> None:
    sentences = _jsonl([{"tokens": ["Justin", "Bieber"], "tags": ["B-PER", "I-PER"]}, "",
                        {"tokens": ["hi"], "tags": ["O"], "id": 7}])
    assert _shape(sentences) == [(["Justin", "Bieber"], ["B-PER", "I-PER"], [1, 1]), (["hi"], ["O"], [3])]
    assert sentences[0].where(1) == "line 1, token 2"


def test_jsonl_column_names_are_settable() -> None:
    sentences = _jsonl([{"words": ["Paris"], "ner": ["B-LOC"]}], tokens_column="words", tags_column="ner")
    assert _shape(sentences) == [(["Paris"], ["B-LOC"], [1])]
    with pytest.raises(InvalidArgument, match="^line 1: missing field 'ner'"):
        _jsonl([{"words": ["Paris"], "tags": ["B-LOC"]}], tokens_column="words", tags_column="ner")


@pytest.mark.parametrize(("row", "message"), [
    ({"tokens": ["a", "b"], "tags": ["O"]}, r"^line 2: 2 tokens but 1 tags; 'tags' needs one tag per token"),
    ({"tokens": [], "tags": []}, r"^line 2: an empty sentence \('tokens' is an empty list\)"),
    ({"tokens": ["a", 3], "tags": ["O", "O"]}, r"^line 2, token 2: token 3 is not a string"),
    ({"tokens": ["a"], "tags": [1]}, r"^line 2, token 1: tag 1 is not a string \(integer tag ids: write the tag names"),
    ({"tokens": ["a"], "tags": [None]}, r"^line 2, token 1: tag null is not a string$"),
    ({"tokens": "a b", "tags": ["O"]}, r"^line 2: field 'tokens' must be a list of strings"),
    ({"tokens": ["a"]}, r"^line 2: missing field 'tags'"),
    ({"tokens": ["a", " "], "tags": ["O", "O"]}, r"^line 2, token 2: the token is empty or blank"),
    ({"tokens": ["a", "x" * 21], "tags": ["O", "O"]}, r"^line 2, token 2: a token of 21 characters, more than 20"),
    ({"tokens": ["a"], "tags": ["B-" + "Y" * 11]}, r"^line 2, token 1: a tag of 13 characters, more than 12"),
    ({"tokens": ["a"], "tags": [""]}, r"^line 2, token 1: the tag is empty or blank"),
    ({"tokens": ["w"] * 7, "tags": ["O"] * 7}, r"^line 2: 7 tokens, more than 6 \(limit max_sentence_tokens\)"),
    ([1, 2], r"^line 2: expected a JSON object with 'tokens' and 'tags'"),
    ('{"tokens": [', r"^line 2: not valid JSON"),
])
def test_bad_jsonl_rows_are_refused_naming_the_line(row: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        _jsonl([{"tokens": ["ok"], "tags": ["O"]}, row])


# -- files ----------------------------------------------------------------------------------------------------------

def test_read_sentences_of_files(tmp_path: Path) -> None:
    conll = tmp_path / "train.conll"
    conll.write_bytes(b"\xef\xbb\xbfZo\xc3\xab B-PER\r\nwins O\r\n")
    assert _shape(list(read_sentences(conll, "conll", LIMITS))) == [(["Zoë", "wins"], ["B-PER", "O"], [1, 2])]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps({"t": ["Zoë"], "y": ["B-PER"]}, ensure_ascii=False) + "\n", encoding="utf-8")
    sentences = list(read_sentences(jsonl, "jsonl", LIMITS, tokens_column="t", tags_column="y"))
    assert _shape(sentences) == [(["Zoë"], ["B-PER"], [1])]


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.bio"
    path.write_bytes(b"A O\nZo\xeb B-PER\n")
    with pytest.raises(InvalidArgument, match=r"^line 2: not valid UTF-8"):
        list(read_sentences(path, "conll", LIMITS))


def test_the_format_from_the_name_or_as_declared() -> None:
    assert infer_tagging_format("train.conll", "") == "conll"
    assert infer_tagging_format("TRAIN.BIO", "") == "conll"
    assert infer_tagging_format("train.jsonl", "") == "jsonl"
    assert infer_tagging_format("train.txt", "conll") == "conll"
    with pytest.raises(InvalidArgument, match="cannot tell the dataset format from the name 'train.txt'"):
        infer_tagging_format("train.txt", "")
    with pytest.raises(InvalidArgument, match="unsupported dataset format 'csv' for token classification"):
        infer_tagging_format("train.csv", "csv")
