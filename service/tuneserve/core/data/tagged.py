"""Parse a token-classification upload (CoNLL text or JSONL, `core.data.conll`) into stored sentences: each one's tags
checked and converted to IOB2 (`tasks.tagging.SchemeCheck`: BIOES/BILOU/IOB1 converted, stray I- tags repaired and
counted, or refused), written to `data.jsonl` as `{"tokens": [...], "tags": [...]}` as they are read.

The dataset's labels are the IOB2 labels of its entity types (`tagging.iob2_labels`: "O" first), its label counts
the entity spans per type, and its statistics `{"tagging": {sentences, tokens, scheme, repaired_tags,
max_sentence_tokens}}` (tuneserve.v1.Dataset.tagging). Every problem is InvalidArgument naming the line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tuneserve.core.data.conll import ConllLimits, read_sentences
from tuneserve.core.data.limits import ParseLimits
from tuneserve.core.data.parsing import ROWS_FILE, ParsedDataset
from tuneserve.errors import InvalidArgument
from tuneserve.tasks.tagging import SchemeCheck, Stray, iob2_labels

TASK = "token_classification"
STRAY_CHOICES = ("repair", "refuse")


def stray_choice(value: str) -> Stray:
    """The stray_i_tags choice ("" = repair); InvalidArgument naming the field for another value."""
    if value in ("", "repair"):
        return "repair"
    if value == "refuse":
        return "refuse"
    raise InvalidArgument(f"stray_i_tags = {value!r}: use repair or refuse")


def parse_tagged(
    path: Path, out_dir: Path, fmt: str, limits: ParseLimits, *, max_sentence_tokens: int, stray: Stray = "repair",
    tokens_column: str = "tokens", tags_column: str = "tags",
) -> ParsedDataset:
    conll_limits = ConllLimits(
        max_token_chars=limits.max_text_chars, max_tag_chars=limits.max_label_chars,
        max_sentence_tokens=max_sentence_tokens, max_line_bytes=limits.max_line_bytes,
    )
    check = SchemeCheck(stray=stray, max_types=limits.max_labels)
    digests: set[bytes] = set()
    duplicates = 0
    longest = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ROWS_FILE, "w", encoding="utf-8") as out:
        for sentence in read_sentences(path, fmt, conll_limits, tokens_column, tags_column):
            if check.sentences >= limits.max_rows:
                raise InvalidArgument(
                    f"{sentence.where()}: more than {limits.max_rows} sentences (limit max_dataset_rows)"
                )
            tags = check.add(sentence.tags, sentence.where)
            longest = max(longest, len(sentence.tokens))
            digest = hashlib.blake2b("\0".join(sentence.tokens).encode("utf-8"), digest_size=8).digest()
            duplicates += digest in digests
            digests.add(digest)
            out.write(json.dumps({"tokens": sentence.tokens, "tags": tags}, ensure_ascii=False) + "\n")
    if not check.spans_per_type:
        raise InvalidArgument(
            f"the dataset's {check.sentences} sentences hold no entity (every tag is O); a token classification "
            "dataset needs at least one entity type"
        )
    stats = {"tagging": {
        "sentences": check.sentences, "tokens": check.tokens, "scheme": check.scheme,
        "repaired_tags": check.repaired, "max_sentence_tokens": longest,
    }}
    return ParsedDataset(
        check.sentences, dict(sorted(check.spans_per_type.items())), duplicates, "text", TASK, False, stats,
        labels=iob2_labels(list(check.spans_per_type)),
    )
