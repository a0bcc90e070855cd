"""Uploads of every task: the task inferred from the columns or set, multi-label and regression targets read as each
format writes them, text pairs, the dataset statistics, and every malformed row refused naming its line."""

from __future__ import annotations

import base64
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fixtures import make_image
from tuneserve.core.data.image_parsing import parse_image_jsonl
from tuneserve.core.data.parsing import Columns, ParsedDataset, ParseLimits, parse_file
from tuneserve.errors import InvalidArgument

LIMITS = ParseLimits(max_rows=100_000, max_labels=4, max_text_chars=50, max_label_chars=8, max_line_bytes=4096)


def parse(tmp_path: Path, name: str, content: str, **columns: Any) -> tuple[ParsedDataset, list[dict[str, Any]]]:
    path = tmp_path / name
    path.write_text(content)
    out = tmp_path / f"out-{name}"
    parsed = parse_file(path, out, name.rsplit(".", 1)[1], Columns(**columns), LIMITS)
    return parsed, [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]


def jsonl(*rows: dict[str, Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_multi_label_csv_splits_strips_drops_empties_and_dedupes(tmp_path: Path) -> None:
    parsed, rows = parse(tmp_path, "a.csv", "text,labels\nx,a|b| a |\ny,\nz, c ||b\n")
    assert (parsed.task, parsed.text_pairs, parsed.label_counts) == ("multi_label", False, {"a": 1, "b": 2, "c": 1})
    assert rows == [{"text": "x", "labels": ["a", "b"]}, {"text": "y", "labels": []}, {"text": "z", "labels": ["c", "b"]}]
    assert parsed.stats == {"labels_per_row": {"mean": 4 / 3, "max": 2, "rows_without_labels": 1}}


def test_multi_label_jsonl_and_named_columns(tmp_path: Path) -> None:
    parsed, rows = parse(tmp_path, "a.jsonl", jsonl({"body": "x", "tags": ["a", "a", 3]}, {"body": "y", "tags": []}),
                         value="body", labels="tags")
    assert (parsed.task, parsed.label_counts) == ("multi_label", {"3": 1, "a": 1})
    assert rows == [{"text": "x", "labels": ["a", "3"]}, {"text": "y", "labels": []}]
    parsed, rows = parse(tmp_path, "b.csv", "text,tags\nx,a;b\ny,b\n", labels="tags", separator=";")
    assert rows[0] == {"text": "x", "labels": ["a", "b"]}


def test_regression_csv_and_jsonl_with_exact_statistics(tmp_path: Path) -> None:
    values = [3.0, -1.5, 2.0, 10.0, 0.25]
    cells = ["3", "-1.5", "+2.", " 1e1 ", ".25"]   # as a spreadsheet may write them
    parsed, rows = parse(tmp_path, "a.csv", "text,target\n" + "".join(f"t{i},{c}\n" for i, c in enumerate(cells)))
    _, json_rows = parse(tmp_path, "a.jsonl", jsonl(*({"text": f"t{i}", "target": v} for i, v in enumerate(values))))
    assert rows == json_rows == [{"text": f"t{i}", "target": v} for i, v in enumerate(values)]
    assert (parsed.task, parsed.label_counts) == ("regression", {})
    q = np.percentile(values, [5, 25, 50, 75, 95])
    assert parsed.stats == {"target": {
        "min": -1.5, "max": 10.0, "mean": float(np.mean(values)), "std": float(np.std(values)),
        "p05": q[0], "p25": q[1], "median": 2.0, "p75": q[3], "p95": q[4],
    }}


def test_text_pairs_for_classification_and_regression(tmp_path: Path) -> None:
    parsed, rows = parse(tmp_path, "a.csv", "text,text_pair,label\nq,a,yes\nq,b,no\nq,a,no\n")
    assert (parsed.task, parsed.text_pairs, parsed.num_duplicates) == ("classification", True, 1)
    assert rows[1] == {"text": "q", "text_pair": "b", "label": "no"}
    parsed, rows = parse(tmp_path, "a.jsonl", jsonl({"s1": "a", "s2": "b", "score": 4}, {"s1": "c", "s2": "d", "score": 1}),
                         value="s1", text_pair="s2", target="score")
    assert (parsed.task, parsed.text_pairs) == ("regression", True)
    assert rows == [{"text": "a", "text_pair": "b", "target": 4.0}, {"text": "c", "text_pair": "d", "target": 1.0}]


def test_the_task_can_be_set(tmp_path: Path) -> None:
    content = jsonl({"text": "x", "label": "a", "target": 1}, {"text": "y", "label": "b", "target": 2})
    with pytest.raises(InvalidArgument, match=r"line 1: fields 'label' \(classification\), 'target' \(regression\)"):
        parse(tmp_path, "a.jsonl", content)
    assert parse(tmp_path, "b.jsonl", content, task="regression")[0].task == "regression"
    assert parse(tmp_path, "c.jsonl", content, task="classification")[0].label_counts == {"a": 1, "b": 1}
    assert parse(tmp_path, "d.jsonl", content, label="label")[0].task == "classification"
    with pytest.raises(InvalidArgument, match=r"^line 1: missing column 'labels' in the CSV header"):
        parse(tmp_path, "e.csv", "text,label\nx,a\n", task="multi_label")


BAD = [
    ("a.jsonl", jsonl({"text": "x", "label": "a"}, {"text": "y", "labels": ["b"]}),
     r"^line 2: has 'labels' \(a multi_label target\) where line 1 has 'label' \(classification\)"),
    ("a.jsonl", jsonl({"text": "x", "labels": ["a"]}, {"text": "y", "label": "b"}), r"^line 2: has 'label'"),
    ("a.jsonl", jsonl({"text": "x", "labels": ["a"]}, {"text": "y", "labels": "b"}),
     r"^line 2: field 'labels' must be a list of labels"),
    ("a.jsonl", jsonl({"text": "x", "labels": ["a", {"b": 1}]}), r"^line 1: field 'labels': item 1 of the list"),
    ("a.jsonl", jsonl({"text": "x", "labels": ["a", "123456789"]}), r"^line 1: label has 9 characters, more than 8"),
    ("a.csv", "text,labels\nx,a|b\ny,c|d|e\n", r"^line 3: 5 distinct labels, more than 4 \(limit max_labels\)"),
    ("a.jsonl", jsonl({"text": "x", "label": ["a"]}), r"^line 1: field 'label' holds a list"),
    ("a.csv", "text,target\nx,1\ny,abc\n", r"^line 3: field 'target' is 'abc', not a finite number"),
    ("a.csv", "text,target\nx,nan\n", r"^line 2: field 'target' is 'nan', not a finite number"),
    ("a.csv", "text,target\nx,-inf\n", r"^line 2: field 'target' is '-inf'"),
    ("a.csv", "text,target\nx,1e999\n", r"^line 2: field 'target' is inf, not a finite number"),
    ("a.csv", "text,target\nx,1_000\n", r"^line 2: field 'target' is '1_000'"),
    ("a.csv", "text,target\nx,\n", r"^line 2: field 'target' is '', not a finite number"),
    ("a.jsonl", '{"text": "x", "target": NaN}\n', r"^line 1: field 'target' is nan, not a finite number"),
    ("a.jsonl", '{"text": "x", "target": Infinity}\n', r"^line 1: field 'target' is inf"),
    ("a.jsonl", '{"text": "x", "target": 1' + "0" * 400 + "}\n", r"^line 1: field 'target' is a number too large"),
    ("a.jsonl", jsonl({"text": "x", "target": "1.5"}), r"^line 1: field 'target' must be a number, not a string"),
    ("a.jsonl", jsonl({"text": "x", "target": True}), r"^line 1: field 'target' must be a number, not bool"),
    ("a.csv", "text,text_pair,label\nq,a,x\nq,,y\n", r"^line 3: empty text_pair \(a pair needs both texts\)"),
    ("a.jsonl", jsonl({"text": "q", "text_pair": "a", "label": "x"}, {"text": "q", "label": "y"}),
     r"^line 2: missing field 'text_pair': line 1 has it"),
    ("a.jsonl", jsonl({"text": "q", "label": "x"}, {"text": "q", "text_pair": "a", "label": "y"}),
     r"^line 2: has 'text_pair' where line 1 has none"),
    ("a.jsonl", jsonl({"text": "q", "text_pair": 3, "label": "x"}), r"^line 1: field 'text_pair' must be a string"),
    ("a.jsonl", jsonl({"text": "q", "text_pair": "a" * 51, "label": "x"}), r"^line 1: text_pair has 51 characters"),
    ("a.jsonl", jsonl({"text": "x", "labels": []}), r"^a multi_label dataset needs at least 1 distinct label; found none"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD)
def test_bad_rows_name_the_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(tmp_path, name, content)


def test_a_named_pair_column_must_be_there(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^line 1: missing column 's2' \(text_pair_column\)"):
        parse(tmp_path, "a.csv", "text,label\nx,a\n", text_pair="s2")


def test_image_jsonl_multi_label_and_regression(tmp_path: Path) -> None:
    red, blue = (base64.b64encode(make_image(label, seed=i)).decode() for i, label in enumerate(("red_square", "blue_bar")))
    path = tmp_path / "a.jsonl"
    path.write_text(jsonl({"img": red, "labels": ["red", "square"]}, {"img": blue, "labels": []}))
    parsed = parse_image_jsonl(path, tmp_path / "out", Columns("img"), LIMITS)
    assert (parsed.modality, parsed.task, parsed.label_counts) == ("image", "multi_label", {"red": 1, "square": 1})
    first = json.loads((tmp_path / "out" / "data.jsonl").read_text().splitlines()[0])
    assert first == {"image": "images/000000.png", "labels": ["red", "square"]}
    path.write_text(jsonl({"img": red, "target": 0.5}, {"img": blue, "target": 2}))
    parsed = parse_image_jsonl(path, tmp_path / "out2", Columns("img"), LIMITS)
    assert (parsed.task, parsed.stats["target"]["max"]) == ("regression", 2.0)
    path.write_text(jsonl({"img": red, "text_pair": "x", "label": "a"}))
    with pytest.raises(InvalidArgument, match=r"^line 1: field 'text_pair': text pairs are for text datasets"):
        parse_image_jsonl(path, tmp_path / "out3", Columns("img"), LIMITS)


def test_regression_streams_in_16_bytes_a_row(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    with open(path, "w") as out:
        out.write("text,target\n")
        out.writelines(f"t{i:07d},{i % 97 / 7:.4f}\n" for i in range(50_000))
    parsed = None

    def run() -> None:
        nonlocal parsed
        parsed = parse_file(path, tmp_path / "out", "csv", Columns(), LIMITS)

    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed is not None and parsed.num_rows == 50_000
    assert peak < 3 << 20
