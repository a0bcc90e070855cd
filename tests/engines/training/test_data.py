"""The worker's row reader (`data.read_rows`) for both stored dataset kinds: text rows and image rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tuneserve.engines.training.data import DatasetError, Example, make_splits, read_examples
from tuneserve.engines.training.vision_data import ImageExample, read_image_examples
from tuneserve.tasks import get_task

CLASSIFICATION, MULTI_LABEL, REGRESSION = get_task("classification"), get_task("multi_label"), get_task("regression")


def read_text(path: Path) -> list[Example]:
    return read_examples(path, CLASSIFICATION)


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_text_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", '{"text": "goal!", "label": "sport"}', "", '{"text": "déficit", "label": 3}')
    assert read_text(path) == [Example("goal!", "sport"), Example("déficit", "3")]


def test_image_rows_resolve_inside_the_dataset(tmp_path: Path) -> None:
    path = write(tmp_path / "ds" / "data.jsonl", '{"image": "images/000001.png", "label": "cat"}')
    assert read_image_examples(path) == [ImageExample((tmp_path / "ds" / "images" / "000001.png").resolve(), "cat")]


@pytest.mark.parametrize(
    ("read", "lines", "message"),
    [
        (read_text, ['{"text": "a", "label": "x"}', '{"label": "x"}'], 'line 2: expected {"text": str, "label": ...}'),
        (read_text, ['{"text": "a"}'], 'line 1: expected {"text": str, "label": ...}'),
        (read_image_examples, ['{"image": 7, "label": "x"}'], 'line 1: expected {"image": "images/NAME", "label": ...}'),
        (read_image_examples, ["", '{"image": "../../etc/passwd", "label": "x"}'],
         "line 2: image path '../../etc/passwd' leaves the dataset"),
        (read_text, ["", "  "], "has no rows"),
    ],
)
def test_bad_rows_name_the_line(
    tmp_path: Path, read: Callable[[Path], Sequence[object]], lines: list[str], message: str
) -> None:
    path = write(tmp_path / "ds" / "data.jsonl", *lines)
    with pytest.raises(DatasetError) as error:
        read(path)
    assert str(error.value) == f"data.jsonl {message}"


def test_rows_of_every_task_and_pairs(tmp_path: Path) -> None:
    multi = write(tmp_path / "m.jsonl", '{"text": "a", "labels": ["x", "y"]}', '{"text": "b", "labels": []}')
    assert read_examples(multi, MULTI_LABEL) == [Example("a", ["x", "y"]), Example("b", [])]
    scores = write(tmp_path / "r.jsonl", '{"text": "a", "text_pair": "b", "target": 1200}')
    assert read_examples(scores, REGRESSION, pairs=True) == [Example("a", 1200.0, "b")]


@pytest.mark.parametrize(
    ("task", "pairs", "line", "message"),
    [
        (MULTI_LABEL, False, '{"text": "a", "labels": "x"}', 'line 1: "labels" must be a list of labels, not "x"'),
        (MULTI_LABEL, False, '{"text": "a", "label": "x"}', 'line 1: expected {"text": str, "labels": ...}'),
        (REGRESSION, False, '{"text": "a", "target": "high"}', 'line 1: "target" must be a finite number, not "high"'),
        (REGRESSION, False, '{"text": "a", "target": NaN}', 'line 1: "target" must be a finite number, not NaN'),
        (REGRESSION, True, '{"text": "a", "target": 1}', 'line 1: expected {"text": str, "text_pair": str, "target": ...}'),
    ],
)
def test_bad_targets_name_the_line(tmp_path: Path, task: object, pairs: bool, line: str, message: str) -> None:
    path = write(tmp_path / "data.jsonl", line)
    with pytest.raises(DatasetError) as error:
        read_examples(path, task, pairs=pairs)  # type: ignore[arg-type]
    assert str(error.value) == f"data.jsonl {message}"


def test_split_is_stratified_for_classification_and_plain_for_regression() -> None:
    rows = [Example(f"t{i}", "rare" if i < 4 else "common") for i in range(40)]
    split = make_splits(rows, None, ["common", "rare"], CLASSIFICATION, fraction=0.25, seed=0)
    assert sum(e.target == "rare" for e in split.validation) == 1 and len(split.validation) == 10
    values = [Example(f"t{i}", float(i)) for i in range(40)]
    split = make_splits(values, None, [], REGRESSION, fraction=0.25, seed=0)
    assert len(split.validation) == 10 and len(split.train) == 30
    tags = [Example(f"t{i}", ["a"] if i % 2 else []) for i in range(10)]
    with pytest.raises(DatasetError, match=r"training labels \['a'\] do not occur in the job's labels \['b'\]"):
        make_splits(tags, None, ["b"], MULTI_LABEL, fraction=0.2, seed=0)


def test_a_multi_label_split_gives_every_label_its_share_of_validation_rows() -> None:
    # 5 of 100 rows carry "rare" (each also "common"): a plain 20% shuffle leaves it no validation row about one time
    # in three; stratifying on each row's rarest label gives it its one row at every seed.
    rows = [Example(f"t{i}", ["common", "rare"] if i < 5 else (["common"] if i % 3 else [])) for i in range(100)]
    for seed in range(20):
        split = make_splits(rows, None, ["common", "rare"], MULTI_LABEL, fraction=0.2, seed=seed)
        assert len(split.validation) == 20
        assert sum("rare" in e.target for e in split.validation) == 1, seed


def test_a_multi_label_split_pools_strata_it_cannot_keep() -> None:
    # 25 labels on one row each and 3 validation rows: more strata than rows, and strata of one row; a stratified
    # split of them would raise, so they are pooled and the split goes ahead.
    rows = [Example(f"t{i}", [f"l{i}"] if i < 25 else ["common"]) for i in range(30)]
    split = make_splits(rows, None, [f"l{i}" for i in range(25)] + ["common"], MULTI_LABEL, fraction=0.1, seed=0)
    assert len(split.validation) == 3 and len(split.train) == 27
    assert sorted(e.text for e in split.train + split.validation) == sorted(e.text for e in rows)
