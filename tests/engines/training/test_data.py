"""The worker's row reader (`data.read_rows`) for both stored dataset kinds: text rows and image rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tuneserve.engines.training.data import DatasetError, Example, read_examples
from tuneserve.engines.training.vision_data import ImageExample, read_image_examples


def write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_text_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "data.jsonl", '{"text": "goal!", "label": "sport"}', "", '{"text": "déficit", "label": 3}')
    assert read_examples(path) == [Example("goal!", "sport"), Example("déficit", "3")]


def test_image_rows_resolve_inside_the_dataset(tmp_path: Path) -> None:
    path = write(tmp_path / "ds" / "data.jsonl", '{"image": "images/000001.png", "label": "cat"}')
    assert read_image_examples(path) == [ImageExample((tmp_path / "ds" / "images" / "000001.png").resolve(), "cat")]


@pytest.mark.parametrize(
    ("read", "lines", "message"),
    [
        (read_examples, ['{"text": "a", "label": "x"}', '{"label": "x"}'], 'line 2: expected {"text": str, "label": ...}'),
        (read_examples, ['{"text": "a"}'], 'line 1: expected {"text": str, "label": ...}'),
        (read_image_examples, ['{"image": 7, "label": "x"}'], 'line 1: expected {"image": "images/NAME", "label": ...}'),
        (read_image_examples, ["", '{"image": "../../etc/passwd", "label": "x"}'],
         "line 2: image path '../../etc/passwd' leaves the dataset"),
        (read_examples, ["", "  "], "has no rows"),
    ],
)
def test_bad_rows_name_the_line(
    tmp_path: Path, read: Callable[[Path], Sequence[object]], lines: list[str], message: str
) -> None:
    path = write(tmp_path / "ds" / "data.jsonl", *lines)
    with pytest.raises(DatasetError) as error:
        read(path)
    assert str(error.value) == f"data.jsonl {message}"
