"""Small token-classification data for the tests: sentences of a tiny vocabulary where names are PER and cities LOC."""

from __future__ import annotations

import json
import random
from pathlib import Path

PEOPLE = [["Justin", "Bieber"], ["Ada", "Lovelace"], ["Alan", "Turing"], ["Grace"], ["Marie", "Curie"]]
PLACES = [["Paris"], ["New", "York"], ["Berlin"], ["Rome"], ["San", "Francisco"]]
TEMPLATES = [("{p}", "lives", "in", "{l}", "."), ("{p}", "visited", "{l}", "today"), ("in", "{l}", ",", "{p}", "sang")]
NER_LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def ner_sentences(n: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """{"tokens", "tags"} rows in IOB2."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for piece in rng.choice(TEMPLATES):
            if piece in ("{p}", "{l}"):
                words, kind = (rng.choice(PEOPLE), "PER") if piece == "{p}" else (rng.choice(PLACES), "LOC")
                tokens += words
                tags += [f"{'B' if i == 0 else 'I'}-{kind}" for i in range(len(words))]
            else:
                tokens.append(piece)
                tags.append("O")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def write_sentences(path: Path, rows: list[dict[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def conll_text(rows: list[dict[str, list[str]]]) -> str:
    return "-DOCSTART- O\n\n" + "\n".join(
        "".join(f"{token}\t{tag}\n" for token, tag in zip(row["tokens"], row["tags"], strict=True)) for row in rows
    )
