"""Tag schemes of token classification: what an uploaded sentence's tags mean, checked and converted to IOB2, and the
entity spans a sequence of IOB2 tags names (the CoNLL definition). Pure functions of lists; no model involved.

Schemes accepted (`O` is "no entity" in all of them; a tag is `<prefix>-<type>`, the type anything non-empty, split
at the first `-`):

- **IOB2** (also called BIO): `B-` begins an entity, `I-` continues it. The scheme training uses; everything is
  converted to it.
- **IOB1** (the original CoNLL-2003 files): `I-` begins an entity too, `B-` only separates two adjacent entities of
  one type. Its `I-` tags that continue nothing are the "stray" `I-` tags below, so `repair` converts IOB1 exactly.
- **BIOES** (`S-` single, `E-` end) and **BILOU** (`U-` unit, `L-` last): converted prefix by prefix
  (S/U -> B, E/L -> I). A dataset may not mix the two.

An `I-` tag that continues nothing (after `O`, at the start of a sentence, or after an entity of another type) is
either repaired (turned into `B-`, and counted) or refused, as the caller chooses. A tag with no known prefix
(`PER` beside `B-PER`, `b-per`, `X-PER`) is an unknown scheme and refused, naming the line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np

from tuneserve.errors import InvalidArgument

Stray = Literal["repair", "refuse"]
Span = tuple[str, int, int]   # (entity type, first token, one past the last token): tokens[start:end]

OUTSIDE = "O"
_TO_IOB2 = {"B": "B", "I": "I", "S": "B", "E": "I", "U": "B", "L": "I"}
_SCHEME_OF_PREFIX = {"S": "BIOES", "E": "BIOES", "U": "BILOU", "L": "BILOU"}
_KNOWN = "tags must be O or B-<type>/I-<type> (IOB2; IOB1, BIOES and BILOU are converted)"


def _token_where(index: int) -> str:
    return f"token {index + 1}"


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag: ("O", "") for O, ("B", "PER") for B-PER; ValueError for any other shape."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, dash, kind = tag.partition("-")
    if not dash or prefix not in _TO_IOB2 or not kind:
        raise ValueError(tag)
    return prefix, kind


def sentence_scheme(tags: Sequence[str], where: Callable[[int], str] = _token_where) -> str:
    """The scheme one sentence's tags are written in: IOB2 (only O, B-, I-; IOB1 too), BIOES or BILOU.
    InvalidArgument for a tag of no known scheme or a sentence mixing BIOES and BILOU prefixes."""
    scheme = "IOB2"
    for index, tag in enumerate(tags):
        try:
            prefix, _ = split_tag(tag)
        except ValueError:
            raise InvalidArgument(f"{where(index)}: unknown tag scheme: tag {tag!r}; {_KNOWN}") from None
        found = _SCHEME_OF_PREFIX.get(prefix)
        if found is not None and scheme != found:
            if scheme != "IOB2":
                raise InvalidArgument(
                    f"{where(index)}: tag {tag!r} is {found} but an earlier tag of the sentence is {scheme}; use one "
                    "scheme for the whole dataset"
                )
            scheme = found
    return scheme


def to_iob2(
    tags: Sequence[str], *, stray: Stray = "repair", where: Callable[[int], str] = _token_where
) -> tuple[list[str], int]:
    """One sentence's tags in IOB2, and how many stray I- tags were repaired (turned into B-). `where(i)` names token
    i in error messages (the line it came from)."""
    sentence_scheme(tags, where)
    out: list[str] = []
    repaired = 0
    previous = ""          # the entity type the previous tag is inside of; "" after O
    for index, tag in enumerate(tags):
        if tag == OUTSIDE:
            out.append(tag)
            previous = ""
            continue
        prefix, kind = split_tag(tag)
        prefix = _TO_IOB2[prefix]
        if prefix == "I" and kind != previous:
            if stray == "refuse":
                after = f"after {tags[index - 1]!r}" if index else "at the start of the sentence"
                raise InvalidArgument(
                    f"{where(index)}: tag {tag!r} {after} continues no {kind} entity; begin it with B-{kind} (or "
                    "upload with stray I- tags repaired)"
                )
            prefix = "B"
            repaired += 1
        out.append(f"{prefix}-{kind}")
        previous = kind
    return out, repaired


@dataclass
class SchemeCheck:
    """Tags of a whole dataset, one sentence at a time: converted to IOB2, the stray I- tags repaired (counted) or
    refused, and BIOES refused beside BILOU in other sentences. `spans_per_type` counts the entities per type."""

    stray: Stray = "repair"
    max_types: int = 0                # more entity types than this is refused (0: no limit)
    scheme: str = "IOB2"              # IOB2 | BIOES | BILOU: the first non-IOB2 scheme seen, if any
    scheme_where: str = ""            # where that scheme was first seen
    repaired: int = 0
    sentences: int = 0
    tokens: int = 0
    spans_per_type: dict[str, int] = field(default_factory=dict)

    def add(self, tags: Sequence[str], where: Callable[[int], str] = _token_where) -> list[str]:
        found = sentence_scheme(tags, where)
        if found != "IOB2":
            if self.scheme == "IOB2":
                self.scheme, self.scheme_where = found, where(0)
            elif found != self.scheme:
                raise InvalidArgument(
                    f"{where(0)}: this sentence's tags are {found} but those at {self.scheme_where} are "
                    f"{self.scheme}; use one scheme for the whole dataset"
                )
        converted, repaired = to_iob2(tags, stray=self.stray, where=where)
        self.repaired += repaired
        self.sentences += 1
        self.tokens += len(tags)
        for kind, start, _ in spans(converted):
            if kind not in self.spans_per_type and 0 < self.max_types <= len(self.spans_per_type):
                raise InvalidArgument(
                    f"{where(start)}: {len(self.spans_per_type) + 1} distinct entity types, more than "
                    f"{self.max_types} (limit max_labels)"
                )
            self.spans_per_type[kind] = self.spans_per_type.get(kind, 0) + 1
        return converted


def spans(tags: Sequence[str]) -> list[Span]:
    """The entities of IOB2 tags as (type, start, end) with `end` exclusive, by the CoNLL definition (conlleval, and
    seqeval's default mode): an entity begins at B-, or at an I- that does not continue the previous tag's type, and
    runs over the I- tags of its type that follow. ValueError for a tag that is not O, B- or I-."""
    found: list[Span] = []
    kind, start = "", -1
    for index, tag in enumerate(tags):
        prefix, tag_kind = split_tag(tag)
        if prefix not in ("O", "B", "I"):
            raise ValueError(f"{tag!r} is not an IOB2 tag")
        if prefix == "I" and tag_kind == kind:
            continue
        if kind:
            found.append((kind, start, index))
        kind, start = (tag_kind, index) if prefix != "O" else ("", -1)
    if kind:
        found.append((kind, start, len(tags)))
    return found


def iob2_labels(types: Sequence[str]) -> list[str]:
    """The label set a model of these entity types predicts over: O, then B- and I- of each type, sorted."""
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in sorted(set(types)) for prefix in ("B", "I")]


# -- words of raw text (Predict) ------------------------------------------------------------------------------------

Word = tuple[str, int, int]   # (word, start, end): text[start:end] == word, offsets in code points (Python str indices)

_APOSTROPHES = "'\u2019"
_ZWJ = "\u200d"
_ABBREVIATION = re.compile(r"[^\W\d_](?:\.[^\W\d_])+\.?")   # U.S., e.g., U.S.A (single letters and dots)


def split_words(text: str) -> list[Word]:
    """Words of raw text the way CoNLL tokens look, with their character offsets (`text[start:end] == word`, always;
    offsets count code points, as Python indexes a str, not bytes or UTF-16 units). Whitespace separates words and is
    never part of one. Within the rest:

    - a word is a run of letters, digits, `_` and combining marks, joined across a hyphen between two of them
      (`Franco-German`, `COVID-19`), across `.` `,` `:` between two digits (`3.5`, `1,000`, `10:30`) and across an
      apostrophe followed by letters (`O'Neil`, `don't`), except the possessive `'s` (or `’s`) ending a word, which is
      a word of its own (`Bieber's` -> `Bieber`, `'s`, as in CoNLL-2003). Single letters joined by dots are one word,
      a final dot included (`U.S.`, `e.g.`, `U.S.A`);
    - any other character (punctuation, symbol, emoji) is a word of its own, with the combining marks, variation
      selectors, skin-tone modifiers and zero-width-joined characters that follow it (one emoji is one word, a flag's
      two regional indicators too); a run of one repeated punctuation character is one word (`...`, `!!`, `--`).

    The text is not normalised: accents stay as typed, precomposed or combining.
    """
    words: list[Word] = []
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char.isspace():
            index += 1
            continue
        start = index
        abbreviation = _ABBREVIATION.match(text, index)
        if abbreviation and not _in_word(text, abbreviation.end()):
            index = abbreviation.end()
        elif _is_word_char(char):
            index = _word_end(text, index)
        elif char in _APOSTROPHES and _possessive_at(text, index):
            index = _attached_end(text, index + 2)
        else:
            index = _symbol_end(text, index)
        words.append((text[start:index], start, index))
    return words


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN" or char == "_"


def _attaches(char: str) -> bool:
    """Marks, joiners, variation selectors, skin-tone modifiers and emoji tag characters: part of what precedes."""
    return (unicodedata.category(char)[0] == "M" or char in "\u200c\u200d"
            or "\U0001f3fb" <= char <= "\U0001f3ff" or "\U000e0020" <= char <= "\U000e007f")


def _in_word(text: str, index: int) -> bool:
    return index < len(text) and (_is_word_char(text[index]) or _attaches(text[index]))


def _possessive_at(text: str, index: int) -> bool:
    """An apostrophe at `index` followed by s and then no more of a word."""
    return text[index + 1:index + 2] in ("s", "S") and not _in_word(text, index + 2)


def _word_end(text: str, index: int) -> int:
    size = len(text)
    while index < size:
        char = text[index]
        if _is_word_char(char) or _attaches(char):
            index += 1
            continue
        before, after = text[index - 1], text[index + 1:index + 2]
        if not after or not _is_word_char(after):
            break
        joins = (char == "-" or (char in ".,:" and before.isdigit() and after.isdigit())
                 or (char in _APOSTROPHES and not _possessive_at(text, index)))
        if not joins:
            break
        index += 1
    return index


def _symbol_end(text: str, index: int) -> int:
    char = text[index]
    index += 1
    if "\U0001f1e6" <= char <= "\U0001f1ff" and "\U0001f1e6" <= text[index:index + 1] <= "\U0001f1ff":
        index += 1                                    # a flag: two regional indicators
    elif unicodedata.category(char)[0] == "P":
        while text[index:index + 1] == char:
            index += 1
    return _attached_end(text, index)


def _attached_end(text: str, index: int) -> int:
    size = len(text)
    while index < size and _attaches(text[index]):
        if text[index] == _ZWJ and index + 1 < size and not text[index + 1].isspace() and not _is_word_char(
                text[index + 1]):
            index += 2                                # a zero-width-joined sequence (an emoji family)
        else:
            index += 1
    return index


# -- sub-words (training labels, Predict aggregation) ---------------------------------------------------------------

IGNORE_INDEX = -100   # the label of a sub-word the loss skips (torch's cross_entropy ignore_index)
WordIds = Sequence[int | None]   # a fast tokenizer's `encoding.word_ids(i)`: the word of each sub-word, None = special


def first_subwords(windows: Sequence[WordIds]) -> list[list[bool]]:
    """For each window of one sentence (one, or several overlapping ones from `return_overflowing_tokens` with a
    stride), which sub-words are the first of their word: the label training puts on the word, and where Predict
    reads it. A window that starts inside a word seen in the window before does not count that word's first sub-word
    in it (it may be a continuation; the earlier window holds the word's real first sub-word)."""
    marks: list[list[bool]] = []
    for number, word_ids in enumerate(windows):
        seen_before = set(windows[number - 1]) if number else set()
        row = [False] * len(word_ids)
        previous: int | None = None
        first_content = True
        for position, word in enumerate(word_ids):
            if word is not None and word != previous:
                row[position] = not (first_content and word in seen_before)
                first_content = False
            previous = word
        marks.append(row)
    return marks


def subword_labels(
    windows: Sequence[WordIds], word_labels: Sequence[int], ignore_index: int = IGNORE_INDEX
) -> list[list[int]]:
    """The training labels of each window: each word's label on its first sub-word, `ignore_index` elsewhere."""
    return [
        [word_labels[word] if first and word is not None else ignore_index for word, first in zip(word_ids, row, strict=True)]
        for word_ids, row in zip(windows, first_subwords(windows), strict=True)
    ]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, in float64 whatever the logits' dtype."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return result


def word_probabilities(
    windows: Sequence[WordIds], probabilities: Sequence[np.ndarray], num_words: int
) -> np.ndarray:
    """Each word's probability row [num_words, L], read at the word's first sub-word (the label training used). With
    several overlapping windows, the window where that sub-word has the most context on both sides wins. A word no
    window reaches (past the truncation limit, or a word the tokenizer made no sub-word of) keeps a row of zeros.
    `probabilities[i]`: [len(windows[i]), L] (`softmax` of the logits)."""
    width = probabilities[0].shape[-1] if len(probabilities) else 0
    rows = np.zeros((num_words, width), dtype=np.float32)
    context = [-1] * num_words
    for word_ids, window, marks in zip(windows, probabilities, first_subwords(windows), strict=True):
        content = [position for position, word in enumerate(word_ids) if word is not None]
        if not content:
            continue
        for position, (word, first) in enumerate(zip(word_ids, marks, strict=True)):
            if not first or word is None or word >= num_words:
                continue
            room = min(position - content[0], content[-1] - position)
            if room > context[word]:
                rows[word], context[word] = window[position], room
    return rows


def word_tags(rows: np.ndarray, labels: Sequence[str]) -> tuple[list[str], list[float]]:
    """The tag and probability of each word's row of `word_probabilities`; a row of zeros (no window reached the
    word) is "O" with score 0.0."""
    tags = [OUTSIDE] * len(rows)
    scores = [0.0] * len(rows)
    for word, row in enumerate(rows):
        if row.any():
            best = int(np.argmax(row))
            tags[word], scores[word] = labels[best], float(row[best])
    return tags, scores


def word_predictions(
    windows: Sequence[WordIds], probabilities: Sequence[np.ndarray], labels: Sequence[str], num_words: int
) -> tuple[list[str], list[float]]:
    """Each word's tag and its probability (`word_tags` of `word_probabilities`): read at the word's first sub-word,
    the window with the most context winning; "O" with score 0.0 for a word no window reaches."""
    return word_tags(word_probabilities(windows, probabilities, num_words), labels)


class Entity(TypedDict):
    type: str
    text: str
    start: int     # character offsets into the input: input[start:end] == text
    end: int
    score: float   # the mean of its words' scores


def entities(words: Sequence[Word], word_tags: Sequence[str], word_scores: Sequence[float], text: str) -> list[Entity]:
    """The entities of one text from its words (`split_words`) and their predicted IOB2 tags (`word_predictions`),
    by the CoNLL definition of `spans`: each from its first word's start to its last word's end."""
    if not len(words) == len(word_tags) == len(word_scores):
        raise ValueError(f"{len(words)} words, {len(word_tags)} tags and {len(word_scores)} scores")
    found: list[Entity] = []
    for kind, first, last in spans(word_tags):
        start, end = words[first][1], words[last - 1][2]
        score = float(np.mean(word_scores[first:last]))
        found.append(Entity(type=kind, text=text[start:end], start=start, end=end, score=score))
    return found
