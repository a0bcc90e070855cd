"""The stratified sample RecommendBackbone embeds."""

from __future__ import annotations

from collections import Counter

from tuneserve.core.recommend.recommender import stratified_sample


def _rows(counts: dict[str, int]) -> list[dict[str, str]]:
    return [{"text": f"{label} {i}", "label": label} for label, n in counts.items() for i in range(n)]


def test_keeps_every_row_when_there_are_few() -> None:
    rows = _rows({"a": 3, "b": 2})

    assert stratified_sample(rows, 10) == rows


def test_keeps_each_label_share_and_the_exact_size() -> None:
    rows = _rows({"a": 600, "b": 300, "c": 100})

    sample = stratified_sample(rows, 100)

    assert len(sample) == 100
    assert Counter(row["label"] for row in sample) == {"a": 60, "b": 30, "c": 10}
    assert len({row["text"] for row in sample}) == 100  # no row twice


def test_rounds_by_largest_remainder() -> None:
    sample = stratified_sample(_rows({"a": 50, "b": 30, "c": 20}), 7)

    # shares 3.5, 2.1, 1.4 -> floors 3, 2, 2 (at least 2 each) = 7
    assert Counter(row["label"] for row in sample) == {"a": 3, "b": 2, "c": 2}


def test_rare_labels_keep_two_rows_within_the_size() -> None:
    rows = _rows({"common": 990, "rare1": 5, "rare2": 5})

    sample = stratified_sample(rows, 20)

    counts = Counter(row["label"] for row in sample)
    assert len(sample) == 20 and counts["rare1"] == 2 and counts["rare2"] == 2 and counts["common"] == 16


def test_is_seeded() -> None:
    rows = _rows({"a": 100, "b": 100})

    assert stratified_sample(rows, 20, seed=1) == stratified_sample(rows, 20, seed=1)
    assert stratified_sample(rows, 20, seed=1) != stratified_sample(rows, 20, seed=2)
