"""Parse a token-classification upload into sentences of (tokens, tags), streaming, with the lines they came from.

Two formats:

- **CoNLL text** (`conll`; a `.conll` or `.bio` name): one token per line, its tag in the last column, a blank line
  between sentences. A line that holds a tab is split on tabs (so a token may hold spaces: `New York\\tB-LOC`),
  any other line on runs of whitespace (`EU NNP B-NP B-ORG`: the token is the first column, the tag the last, the
  columns between are ignored). `-DOCSTART-` lines are skipped, CRLF line ends, a byte-order mark, several blank
  lines and a missing blank line at the end are all fine.
- **JSONL** (`jsonl`): one sentence per line, `{"tokens": [...], "tags": [...]}`, the two keys settable.

Tags come out as written; `tuneserve.tasks.tagging` checks their scheme and converts them to IOB2. Every problem is
an `InvalidArgument` naming the line (1-based, as an editor shows it): a line with no tag, tokens and tags of
different lengths, an empty sentence, a token or tag that is not a string, is blank, or is longer than its limit.
Memory holds one line and one sentence (at most `max_sentence_tokens` tokens), never the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneserve.core.data.parsing import decoded_lines
from tuneserve.core.names import unprintable
from tuneserve.errors import InvalidArgument

TAGGING_FORMATS = {".conll": "conll", ".bio": "conll", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class ConllLimits:
    max_token_chars: int = 1000
    max_tag_chars: int = 64
    max_sentence_tokens: int = 10_000
    max_line_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Sentence:
    """One sentence as uploaded. `lines[i]`: the line token i came from (JSONL: the sentence's one line)."""

    tokens: list[str]
    tags: list[str]
    lines: list[int]
    one_line: bool = False      # JSONL: the whole sentence is on one line

    @property
    def line(self) -> int:
        return self.lines[0]

    def where(self, index: int | None = None) -> str:
        """Where token `index` (or the sentence) came from, as an error message names it."""
        if index is None:
            return f"line {self.lines[0]}"
        if self.one_line:
            return f"line {self.lines[index]}, token {index + 1}"
        return f"line {self.lines[index]}"


def infer_tagging_format(name: str, declared: str) -> str:
    if declared:
        if declared not in ("conll", "jsonl"):
            raise InvalidArgument(f"unsupported dataset format {declared!r} for token classification: use conll or jsonl")
        return declared
    suffix = Path(name).suffix.lower()
    if suffix not in TAGGING_FORMATS:
        raise InvalidArgument(
            f"cannot tell the dataset format from the name {name!r}: set format (conll or jsonl) or use a "
            f"{', '.join(TAGGING_FORMATS)} file name"
        )
    return TAGGING_FORMATS[suffix]


def read_sentences(
    path: Path, fmt: str, limits: ConllLimits, tokens_column: str = "tokens", tags_column: str = "tags"
) -> Iterator[Sentence]:
    """The sentences of an uploaded file, read as they are needed (UTF-8, one line at a time)."""
    with open(path, "rb") as raw:
        lines = decoded_lines(raw, limits.max_line_bytes)
        if fmt == "conll":
            yield from conll_sentences(lines, limits)
        elif fmt == "jsonl":
            yield from jsonl_sentences(lines, limits, tokens_column, tags_column)
        else:
            raise InvalidArgument(f"unsupported dataset format {fmt!r} for token classification: use conll or jsonl")


def conll_sentences(lines: Iterator[str], limits: ConllLimits) -> Iterator[Sentence]:
    """Sentences of CoNLL text lines (each line as read, its line end included or not)."""
    tokens: list[str] = []
    tags: list[str] = []
    numbers: list[int] = []
    found = False
    for number, line in enumerate(lines, start=1):
        columns = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        columns = [column.strip() for column in columns]
        if not any(columns):
            if tokens:
                found = True
                yield Sentence(tokens, tags, numbers)
                tokens, tags, numbers = [], [], []
            continue
        if columns[0] == DOCSTART:
            # NOTE: a document boundary is a sentence boundary too, blank line after it or not
            if tokens:
                found = True
                yield Sentence(tokens, tags, numbers)
                tokens, tags, numbers = [], [], []
            continue
        where = f"line {number}"
        if len(columns) < 2 or not columns[-1]:
            raise InvalidArgument(
                f"{where}: no tag; put the token, then its tag in the last column (separated by a tab or spaces), "
                "and a blank line between sentences"
            )
        token, tag = columns[0], columns[-1]
        if not token:
            raise InvalidArgument(f"{where}: the token (first column) is empty")
        _check_token(token, where, limits)
        _check_tag(tag, where, limits)
        if len(tokens) >= limits.max_sentence_tokens:
            raise InvalidArgument(
                f"{where}: the sentence that starts at line {numbers[0]} has more than {limits.max_sentence_tokens} "
                "tokens (limit max_sentence_tokens); is a blank line missing between sentences?"
            )
        tokens.append(token)
        tags.append(tag)
        numbers.append(number)
    if tokens:
        found = True
        yield Sentence(tokens, tags, numbers)
    if not found:
        raise InvalidArgument("the dataset file holds no sentences (one token and its tag per line)")


def jsonl_sentences(
    lines: Iterator[str], limits: ConllLimits, tokens_column: str = "tokens", tags_column: str = "tags"
) -> Iterator[Sentence]:
    """Sentences of JSONL lines, one `{tokens_column: [...], tags_column: [...]}` object each (blank lines skipped)."""
    found = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        obj = _json_object(line, where, tokens_column, tags_column)
        tokens = _string_list(obj, tokens_column, "token", where)
        tags = _string_list(obj, tags_column, "tag", where)
        if not tokens:
            raise InvalidArgument(f"{where}: an empty sentence ({tokens_column!r} is an empty list)")
        if len(tokens) != len(tags):
            raise InvalidArgument(
                f"{where}: {len(tokens)} tokens but {len(tags)} tags; {tags_column!r} needs one tag per token"
            )
        if len(tokens) > limits.max_sentence_tokens:
            raise InvalidArgument(
                f"{where}: {len(tokens)} tokens, more than {limits.max_sentence_tokens} (limit max_sentence_tokens)"
            )
        for index, (token, tag) in enumerate(zip(tokens, tags, strict=True)):
            if not token.strip():
                raise InvalidArgument(f"{where}, token {index + 1}: the token is empty or blank")
            _check_token(token, f"{where}, token {index + 1}", limits)
            _check_tag(tag, f"{where}, token {index + 1}", limits)
        found = True
        yield Sentence(tokens, tags, [number] * len(tokens), one_line=True)
    if not found:
        raise InvalidArgument("the dataset file holds no sentences (one JSON object per line)")


def _json_object(line: str, where: str, tokens_column: str, tags_column: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError):
        raise InvalidArgument(f"{where}: not valid JSON (a number too long or nesting too deep)") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where}: expected a JSON object with {tokens_column!r} and {tags_column!r}")
    for key in (tokens_column, tags_column):
        if key not in obj:
            raise InvalidArgument(f"{where}: missing field {key!r}")
    return obj


def _string_list(obj: dict[str, Any], key: str, what: str, where: str) -> list[str]:
    value = obj[key]
    if not isinstance(value, list):
        raise InvalidArgument(f"{where}: field {key!r} must be a list of strings, one {what} per token")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            hint = " (integer tag ids: write the tag names instead)" if what == "tag" and isinstance(item, int) else ""
            raise InvalidArgument(
                f"{where}, token {index + 1}: {what} {_shown(item)} is not a string{hint}"
            )
    return value


def _check_token(token: str, where: str, limits: ConllLimits) -> None:
    if len(token) > limits.max_token_chars:
        raise InvalidArgument(
            f"{where}: a token of {len(token)} characters, more than {limits.max_token_chars} (limit max_token_chars)"
        )
    if any("\ud800" <= char <= "\udfff" for char in token):
        raise InvalidArgument(f"{where}: the token holds an unpaired surrogate (such as \\ud800), which is not text")


def _check_tag(tag: str, where: str, limits: ConllLimits) -> None:
    if len(tag) > limits.max_tag_chars:
        raise InvalidArgument(
            f"{where}: a tag of {len(tag)} characters, more than {limits.max_tag_chars} (limit max_tag_chars)"
        )
    if not tag.strip():
        raise InvalidArgument(f"{where}: the tag is empty or blank")
    problem = unprintable(tag)
    if problem is not None:
        raise InvalidArgument(f"{where}: the tag holds {problem}")


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."

