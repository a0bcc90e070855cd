"""Synthetic stand-ins for what cannot travel to the GPU machine: a MiniLM-shaped backbone and labelled text.

Everything here is built in seconds from a seed, offline, with only torch, transformers and tokenizers:

- a WordPiece tokenizer trained on the synthetic corpus and saved as a BERT tokenizer (`save_pretrained`);
- a random-init BertModel with all-MiniLM-L6-v2's shape (hidden 384, 6 layers, 12 heads, intermediate 1536,
  vocab 30522, 512 positions: 22.7M parameters) and its mean-pooling marker (1_Pooling/config.json);
- JSONL rows {"text", "label"} whose label is learnable from keywords, and fixed-length benchmark texts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

MINILM_SHAPE: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
}
LABELS = ["alpha", "bravo", "charlie", "delta"]
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SYLLABLES = ["ba", "ko", "ri", "tem", "lu", "sa", "vin", "do", "pe", "mar", "qui", "zo", "fen", "ga", "hol", "nu"]


def _words(rng: random.Random, count: int, syllables: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    assert count <= len(_SYLLABLES) ** syllables // 2, "too few syllable combinations for that many words"
    words: set[str] = set()
    while len(words) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(syllables))
        if word not in exclude:
            words.add(word)
    return sorted(words)


class Corpus:
    """Filler words shared by all labels and a few keywords per label; a text's label is the keywords it carries."""

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.filler = _words(rng, 400, 3)
        keywords = _words(rng, 20 * len(LABELS), 4, exclude=frozenset(self.filler))
        # NOTE: sorted words in a shuffled order, so each label gets keywords from all over the alphabet.
        rng.shuffle(keywords)
        self.keywords = {label: keywords[i::len(LABELS)] for i, label in enumerate(LABELS)}

    def text(self, rng: random.Random, label: str, words: int, signal: float = 0.12) -> str:
        others = [k for other, ks in self.keywords.items() if other != label for k in ks]
        out = []
        for _ in range(words):
            draw = rng.random()
            if draw < signal:
                out.append(rng.choice(self.keywords[label]))
            elif draw < signal + 0.02:
                out.append(rng.choice(others))
            else:
                out.append(rng.choice(self.filler))
        return " ".join(out)

    def rows(self, count: int, seed: int, min_words: int = 90, max_words: int = 200) -> list[dict[str, str]]:
        rng = random.Random(seed)
        return [
            {"text": self.text(rng, label, rng.randint(min_words, max_words)), "label": label}
            for label in (LABELS[i % len(LABELS)] for i in range(count))
        ]

    def long_texts(self, count: int, seed: int, words: int = 160) -> list[str]:
        """Texts longer than 128 tokens (one token per word plus [CLS]/[SEP]), so they truncate to max_seq_length."""
        rng = random.Random(seed)
        return [self.text(rng, LABELS[i % len(LABELS)], words) for i in range(count)]

    def vocabulary_text(self) -> list[str]:
        return [" ".join(self.filler), *(" ".join(ks) for ks in self.keywords.values())]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def build_tokenizer(corpus: Corpus, directory: Path) -> None:
    """Train a WordPiece vocabulary on the corpus (milliseconds) and save it as a BERT tokenizer."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    # NOTE: transformers 5 keeps BertTokenizerFast as an alias of its (tokenizers-backed) BertTokenizer.
    bert_tokenizer = getattr(transformers, "BertTokenizerFast", None) or transformers.BertTokenizer

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)  # type: ignore[assignment]
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # type: ignore[assignment]
    trainer = trainers.WordPieceTrainer(vocab_size=1000, special_tokens=_SPECIAL)  # type: ignore[call-arg]
    tokenizer.train_from_iterator(corpus.vocabulary_text() * 3, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(  # type: ignore[assignment]
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()  # type: ignore[assignment]
    wrapped = bert_tokenizer(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MINILM_SHAPE["max_position_embeddings"],
    )
    wrapped.save_pretrained(str(directory))


def build_backbone(directory: Path, corpus: Corpus, seed: int = 0) -> int:
    """A random-init MiniLM-shaped BertModel + tokenizer in `directory`, loadable by AutoModel/AutoTokenizer
    offline. Returns its parameter count."""
    import torch
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    build_tokenizer(corpus, directory)
    torch.manual_seed(seed)
    config = BertConfig(**MINILM_SHAPE, hidden_act="gelu", pad_token_id=0)
    model = BertModel(config)
    model.save_pretrained(str(directory))
    # NOTE: the marker sentence-transformers writes for all-MiniLM-L6-v2: TextClassifier pools by mean, as for it.
    pooling = directory / "1_Pooling"
    pooling.mkdir(exist_ok=True)
    (pooling / "config.json").write_text(
        json.dumps({"word_embedding_dimension": MINILM_SHAPE["hidden_size"], "pooling_mode_mean_tokens": True})
    )
    return sum(p.numel() for p in model.parameters())
