"""Predict's checks of text pairs: the request's own fields first, then what the model reads (single texts or pairs)."""

from __future__ import annotations

import pytest

from tuneserve.core.serving.requests import PredictParams, check_params, inputs_for
from tuneserve.errors import InvalidArgument
from tuneserve.settings import LimitSettings
from tuneserve.types import ModelRecord

SINGLE = ModelRecord("model-s", "s", "text", "tiny", ["a", "b"], 0.0)
PAIRS = ModelRecord("model-p", "p", "text", "tiny", [], 0.0, task="regression", text_pairs=True)
IMAGES = ModelRecord("model-i", "i", "image", "tiny", ["a", "b"], 0.0)


def test_a_pair_model_reads_each_text_with_its_pair() -> None:
    params = PredictParams(PAIRS.id, ["q1", "q2"], text_pairs=["a1", "a2"])
    check_params(params, LimitSettings())
    assert inputs_for(PAIRS, params) == [("q1", "a1"), ("q2", "a2")]
    assert inputs_for(SINGLE, PredictParams(SINGLE.id, ["q1"])) == ["q1"]


@pytest.mark.parametrize(
    ("texts", "pairs", "reason"),
    [
        (["q1", "q2"], ["a1"], "text_pairs holds 1 text and texts 2 texts"),
        (["q1"], ["a1", "a2"], "text_pairs holds 2 texts and texts 1 text"),
        (["q1", "q2"], ["a1", ""], r"text_pairs\[1\] is empty or only whitespace"),
        (["q1"], ["\n\t"], r"text_pairs\[0\] is empty or only whitespace"),
        (["q1"], ["x" * 11], r"text_pairs\[0\] has 11 characters, more than 10 \(limit max_text_chars\)"),
    ],
)
def test_bad_text_pairs_are_refused_before_the_model_is_looked_up(
    texts: list[str], pairs: list[str], reason: str
) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        check_params(PredictParams(PAIRS.id, texts, text_pairs=pairs), LimitSettings(max_text_chars=10))


@pytest.mark.parametrize(
    ("model", "pairs", "reason"),
    [
        (SINGLE, ["a1"], "model 'model-s' reads single texts, not pairs: leave text_pairs empty"),
        (PAIRS, [], "model 'model-p' reads text pairs: send text_pairs, the second text of each pair, one per text"),
    ],
)
def test_text_pairs_must_match_what_the_model_reads(model: ModelRecord, pairs: list[str], reason: str) -> None:
    params = PredictParams(model.id, ["q1"], text_pairs=pairs)
    check_params(params, LimitSettings())
    with pytest.raises(InvalidArgument, match=reason):
        inputs_for(model, params)


def test_text_pairs_with_images_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="text_pairs holds 1 text and texts 0 texts"):
        check_params(PredictParams(IMAGES.id, [], images=[b"png"], text_pairs=["a1"]), LimitSettings())
