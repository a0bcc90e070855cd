"""The text runtime serves each task's scores (`Task.outputs` of the graph's logits, with the version's task.json) and
encodes text pairs together, as the training pipeline's tokenizer does: tiny exported heads of every task
(tests/serving_models.py) against the same head run in torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import make_texts
from tests.serving_models import MAX_SEQ_LENGTH, TinyVersion, build_version
from tuneserve.engines.runtime import OnnxTextClassifier, RuntimeOptions, open_runtime
from tuneserve.tasks import TASK_FILE, TaskParams

OPTIONS = RuntimeOptions(intra_op_threads=1, providers=("CPUExecutionProvider",))
TEXTS = [text for text, _ in make_texts({"sport": 3, "tech": 3}, seed=5)]
PAIRS = [(TEXTS[i], TEXTS[-1 - i]) for i in range(len(TEXTS))]
TAGS = ["aid", "medical", "water"]


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyVersion]:
    root = tmp_path_factory.mktemp("task-runtimes")
    return {
        "classification": build_version(root / "classification", TaskParams(), ["sport", "tech"]),
        "multi_label": build_version(
            root / "multi_label", TaskParams("multi_label", thresholds=[0.2, 0.5, 0.8]), TAGS, seed=1
        ),
        "regression": build_version(
            root / "regression", TaskParams("regression", target_mean=50.0, target_std=10.0), [], seed=2
        ),
        "pair_classification": build_version(
            root / "pair_classification", TaskParams(text_pairs=True), ["different", "same"], seed=3
        ),
        "pair_regression": build_version(
            root / "pair_regression", TaskParams("regression", text_pairs=True, target_mean=2.5, target_std=1.5), [],
            seed=4,
        ),
    }


def _open(version: TinyVersion) -> OnnxTextClassifier:
    runtime = open_runtime(version.path, "fp32", options=OPTIONS)
    assert isinstance(runtime, OnnxTextClassifier)
    return runtime


def test_classification_serves_softmax_probabilities(versions: dict[str, TinyVersion]) -> None:
    version = versions["classification"]
    runtime = _open(version)
    assert runtime.task.name == "classification" and runtime.labels == ["sport", "tech"] and not runtime.text_pairs
    scores = runtime.predict(TEXTS)
    assert scores.shape == (len(TEXTS), 2) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, version.scores(TEXTS), atol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_multi_label_serves_per_label_sigmoids_and_keeps_the_tuned_thresholds(
    versions: dict[str, TinyVersion],
) -> None:
    version = versions["multi_label"]
    runtime = _open(version)
    assert runtime.task.name == "multi_label" and runtime.params.thresholds == [0.2, 0.5, 0.8]
    scores = runtime.predict(TEXTS)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-version.logits(TEXTS))), atol=1e-5)
    assert not np.allclose(scores.sum(axis=1), 1.0)  # independent per label, not a softmax
    for row in scores:
        decoded = runtime.task.decode(row, runtime.labels, runtime.params, 0)
        expected = [label for label, score, t in zip(TAGS, row, [0.2, 0.5, 0.8], strict=True) if score >= t]
        assert sorted(decoded.labels) == expected


def test_regression_serves_values_in_the_targets_units(versions: dict[str, TinyVersion]) -> None:
    version = versions["regression"]
    runtime = _open(version)
    assert runtime.task.name == "regression" and runtime.labels == []
    values = runtime.predict(TEXTS)
    assert values.shape == (len(TEXTS), 1)
    np.testing.assert_allclose(values, version.logits(TEXTS) * 10.0 + 50.0, atol=1e-4)


@pytest.mark.parametrize("name", ["pair_classification", "pair_regression"])
def test_pair_models_encode_both_texts_together(versions: dict[str, TinyVersion], name: str) -> None:
    version = versions[name]
    runtime = _open(version)
    assert runtime.text_pairs
    features = runtime.encode([("first text", "second one")])[0]
    assert features.type_ids.tolist().count(1) == 3  # "second one [SEP]": the pair's second text is segment 1
    scores = runtime.predict(PAIRS)
    np.testing.assert_allclose(scores, version.scores(PAIRS), atol=1e-4)
    swapped = runtime.predict([(b, a) for a, b in PAIRS])
    assert not np.allclose(scores, swapped), "the pair's order must matter (token type ids)"


def test_a_long_pair_is_truncated_to_max_seq_length_as_training_truncates_it(versions: dict[str, TinyVersion]) -> None:
    version = versions["pair_regression"]
    runtime = _open(version)
    long = " ".join(TEXTS) * 30
    pairs = [(long, "short question"), ("short question", long), (long, long[::-1])]
    for features in runtime.encode(pairs):
        assert features.length == MAX_SEQ_LENGTH
    np.testing.assert_allclose(runtime.predict(pairs), version.scores(pairs), atol=1e-4)
    # each side is cut on its own to max_chars_per_token x max_seq_length characters, without changing its tokens
    assert len(long) > OPTIONS.max_chars_per_token * MAX_SEQ_LENGTH


def test_a_version_without_task_json_is_single_label_classification(
    versions: dict[str, TinyVersion], tmp_path: Path
) -> None:
    import shutil

    old = Path(shutil.copytree(versions["classification"].path, tmp_path / "old"))
    (old / TASK_FILE).unlink()
    runtime = open_runtime(old, "fp32", options=OPTIONS)
    assert runtime.task.name == "classification" and runtime.params == TaskParams()
    np.testing.assert_allclose(runtime.predict(TEXTS), versions["classification"].scores(TEXTS), atol=1e-5)
