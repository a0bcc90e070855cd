"""Datasets of every task through the real client on a real server: multi-label, regression and text pairs in CSV and
JSONL, the task inferred or set, GetDataset's statistics, the CLI, every bad upload refused naming its line with
nothing stored, and FineTune refusing a task or input shape that cannot train."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_image
from tests.integration.test_image_upload import class_folders, stored_dirs, zip_bytes
from tuneserve_client import Client, InvalidArgument, Modality, Task
from tuneserve_client.cli.main import main

TARGETS = [0.5, 2.0, -1.0, 4.5, 3.0, 1.0]


def jsonl(*rows: dict[str, Any]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("task-uploads")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    settings.limits.max_labels = 5
    settings.limits.max_name_chars = 200    # also the longest label
    thread = ServerThread(settings).start()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[Client]:
    with Client(server.target, timeout=60) as c:
        yield c


def stored_rows(server: ServerThread, dataset_id: str) -> list[dict[str, Any]]:
    path = server.settings.storage.data_dir / "datasets" / dataset_id / "data.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_multi_label_csv_and_jsonl_with_labels_per_row(client: Client, server: ServerThread) -> None:
    csv = b"text,labels\nflood in town,water|aid\nbroken leg,medical\nall quiet,\nneed food and water,aid|water|aid\n"
    from_csv = client.upload_dataset_bytes(csv, name="tags.csv")
    from_jsonl = client.upload_dataset_bytes(jsonl(
        {"text": "flood in town", "labels": ["water", "aid"]}, {"text": "broken leg", "labels": ["medical"]},
        {"text": "all quiet", "labels": []}, {"text": "need food and water", "labels": ["aid", "water"]},
    ), name="tags.jsonl")
    for ds in (from_csv, from_jsonl):
        assert (ds.task, ds.text_pairs, ds.num_rows) == (Task.TASK_MULTI_LABEL, False, 4)
        assert list(ds.labels) == ["aid", "medical", "water"]
        assert dict(ds.label_counts) == {"aid": 2, "medical": 1, "water": 2}
        assert (ds.labels_per_row.mean, ds.labels_per_row.max, ds.labels_per_row.rows_without_labels) == (1.25, 2, 1)
        assert not ds.HasField("target_stats")
    assert stored_rows(server, from_csv.id)[3] == {"text": "need food and water", "labels": ["aid", "water"]}
    assert client.get_dataset(from_csv.id) == from_csv


def test_regression_statistics_are_exact(client: Client, server: ServerThread) -> None:
    csv = "text,score\n" + "".join(f"review {i},{t}\n" for i, t in enumerate(TARGETS))
    ds = client.upload_dataset_bytes(csv.encode(), name="scores.csv", target_column="score")
    assert (ds.task, list(ds.labels), dict(ds.label_counts)) == (Task.TASK_REGRESSION, [], {})
    got = client.get_dataset(ds.id).target_stats
    q = np.percentile(TARGETS, [5, 25, 50, 75, 95])
    assert (got.min, got.max, got.mean, got.std) == (-1.0, 4.5, pytest.approx(np.mean(TARGETS)), pytest.approx(np.std(TARGETS)))
    assert [got.p05, got.p25, got.median, got.p75, got.p95] == pytest.approx(list(q))
    assert not ds.HasField("labels_per_row")
    assert stored_rows(server, ds.id)[0] == {"text": "review 0", "target": 0.5}
    from_jsonl = client.upload_dataset_bytes(jsonl(*({"text": f"r{i}", "target": t} for i, t in enumerate(TARGETS))),
                                             name="scores.jsonl")
    assert from_jsonl.target_stats == got


def test_text_pairs(client: Client, server: ServerThread) -> None:
    pairs = client.upload_dataset_bytes(
        b"question,answer,label\nhow tall?,3 m,yes\nhow tall?,blue,no\nwhat colour?,blue,yes\n", name="qa.csv",
        text_column="question", text_pair_column="answer",
    )
    assert (pairs.task, pairs.text_pairs, dict(pairs.label_counts)) == (Task.TASK_CLASSIFICATION, True, {"no": 1, "yes": 2})
    assert stored_rows(server, pairs.id)[1] == {"text": "how tall?", "text_pair": "blue", "label": "no"}
    similarity = client.upload_dataset_bytes(
        jsonl({"text": "a cat", "text_pair": "a kitten", "target": 4.5}, {"text": "a cat", "text_pair": "a car", "target": 1}),
        name="sts.jsonl",
    )
    assert (similarity.task, similarity.text_pairs, similarity.target_stats.max) == (Task.TASK_REGRESSION, True, 4.5)


def test_the_task_can_be_set(client: Client) -> None:
    both = jsonl({"text": "a", "label": "x", "target": 1}, {"text": "b", "label": "y", "target": 2})
    with pytest.raises(InvalidArgument, match="one file holds one task: set the task"):
        client.upload_dataset_bytes(both, name="both.jsonl")
    assert client.upload_dataset_bytes(both, name="both.jsonl", task="regression").task == Task.TASK_REGRESSION
    assert client.upload_dataset_bytes(both, name="both.jsonl", task=Task.TASK_CLASSIFICATION).labels == ["x", "y"]
    tags = client.upload_dataset_bytes(b"text,tags\na,x;y\nb,y\n", name="t.csv", task="multi-label",
                                       labels_column="tags", label_separator=";")
    assert dict(tags.label_counts) == {"x": 1, "y": 2}


def test_image_jsonl_multi_label_and_regression(client: Client) -> None:
    images = [base64.b64encode(make_image(label, seed=i)).decode() for i, label in enumerate(["red_square", "blue_bar"])]
    tagged = client.upload_dataset_bytes(
        jsonl({"img": images[0], "labels": ["red", "square"]}, {"img": images[1], "labels": ["blue"]}),
        name="tagged.jsonl", image_column="img",
    )
    assert (tagged.modality, tagged.task, list(tagged.labels)) == (Modality.MODALITY_IMAGE, Task.TASK_MULTI_LABEL,
                                                                    ["blue", "red", "square"])
    scored = client.upload_dataset_bytes(
        jsonl({"img": images[0], "target": 1}, {"img": images[1], "target": 2}), name="scored.jsonl", image_column="img"
    )
    assert (scored.task, scored.target_stats.mean) == (Task.TASK_REGRESSION, 1.5)


BAD = [
    ("mixed.jsonl", jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "labels": ["x"]}), {},
     "line 3: has 'labels' (a multi_label target) where line 1 has 'label'"),
    ("notlist.jsonl", jsonl({"text": "a", "labels": ["x"]}, {"text": "b", "labels": "x"}), {},
     "line 2: field 'labels' must be a list of labels"),
    ("long.jsonl", jsonl({"text": "a", "labels": ["x" * 201]}), {}, "line 1: label has 201 characters, more than 200"),
    ("many.csv", b"text,labels\na,l1|l2|l3\nb,l4\nc,l5|l6\n", {}, "line 4: 6 distinct labels, more than 5"),
    ("nan.csv", b"text,target\na,1\nb,NaN\n", {}, "line 3: field 'target' is 'NaN', not a finite number"),
    ("word.csv", b"text,target\na,1\nb,high\n", {}, "line 3: field 'target' is 'high', not a finite number"),
    ("inf.jsonl", b'{"text": "a", "target": 1}\n{"text": "b", "target": -Infinity}\n', {},
     "line 2: field 'target' is -inf, not a finite number"),
    ("half.csv", b"text,text_pair,label\na,b,x\nc,,y\n", {}, "line 3: empty text_pair (a pair needs both texts)"),
    ("half.jsonl", jsonl({"text": "a", "text_pair": "b", "label": "x"}, {"text_pair": "d", "label": "y"}), {},
     "line 2: missing field 'text'"),
    ("pairless.jsonl", jsonl({"text": "a", "text_pair": "b", "label": "x"}, {"text": "c", "label": "y"}), {},
     "line 2: missing field 'text_pair': line 1 has it"),
    ("a.csv", b"text,label\na,x\nb,y\n", {"label_separator": "|" * 9}, "label_separator has 9 characters, more than 8"),
    ("a.jsonl", jsonl({"text": "a", "labels": ["x"]}), {"label_separator": ";"}, "label_separator is for multi-label CSV"),
    ("a.csv", b"text,label\na,x\nb,y\n", {"task": 9}, "metadata.task = 9 is not a known Task"),
    ("a.csv", b"text,label\na,x\nb,y\n", {"target_column": " "}, "target_column is only whitespace"),
    ("a.zip", zip_bytes(class_folders({"red_square": 1, "blue_bar": 1})), {"task": "regression"},
     "task 'regression': a zip of class folders is a classification dataset"),
    ("a.jsonl", b"{}\n", {"image_column": "img", "text_pair_column": "q"}, "text_pair_column: text pairs are for text"),
]


@pytest.mark.parametrize(("name", "content", "options", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_uploads_name_the_line_and_store_nothing(
    client: Client, server: ServerThread, name: str, content: bytes, options: dict[str, Any], message: str
) -> None:
    before, count = stored_dirs(server), len(client.list_datasets(page_size=1000).datasets)
    with pytest.raises(InvalidArgument) as raised:
        client.upload_dataset_bytes(content, name=name, **options)
    assert message in str(raised.value)
    assert stored_dirs(server) == before
    assert len(client.list_datasets(page_size=1000).datasets) == count


def test_cli_uploads_and_shows_each_task(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("body,score\n" + "".join(f"r{i},{t}\n" for i, t in enumerate(TARGETS)))
    cli = ["--target", server.target]
    assert main([*cli, "--json", "datasets", "upload", str(path), "--task", "regression", "--text-column", "body",
                 "--target-column", "score"]) == 0
    uploaded = json.loads(capsys.readouterr().out)
    assert (uploaded["task"], uploaded["target_stats"]["max"], uploaded["text_pairs"]) == ("TASK_REGRESSION", 4.5, False)
    assert main([*cli, "datasets", "get", uploaded["id"]]) == 0
    shown = capsys.readouterr().out
    assert "task:" in shown and "regression" in shown and "min -1, max 4.5" in shown and "median 1.5" in shown
    tags = tmp_path / "tags.csv"
    tags.write_text("text,answer,topics\nq,a,x+y\nr,b,\n")
    assert main([*cli, "datasets", "upload", str(tags), "--labels-column", "topics", "--label-separator", "+",
                 "--text-pair-column", "answer"]) == 0
    shown = capsys.readouterr().out
    assert "multi-label, text pairs" in shown and "mean 1.00, max 2, 1 rows without labels" in shown
    assert main([*cli, "datasets", "list", "--page-size", "1000"]) == 0
    listed = capsys.readouterr().out
    assert "multi-label, text pairs" in listed and "target -1..4.5" in listed
    assert main([*cli, "datasets", "upload", str(tags), "--task", "regression"]) == 2
    assert "line 1: missing column 'target'" in capsys.readouterr().err


def test_fine_tune_refuses_shapes_that_cannot_train(client: Client, tiny_efficientnet: Path, tiny_bert: Path) -> None:
    rows = "".join(f"q{i},a{i},{'xy'[i % 2]}\n" for i in range(10))
    pairs = client.upload_dataset_bytes(f"text,text_pair,label\n{rows}".encode(), name="p.csv")
    with pytest.raises(InvalidArgument, match=r"holds text pairs \(text_pairs\).* is for image inputs"):
        client.fine_tune(pairs.id, backbone=str(tiny_efficientnet))
    single = client.upload_dataset_bytes(b"text,label\na,x\nc,y\ne,x\ng,y\n", name="s.csv")
    with pytest.raises(InvalidArgument, match=r"is classification with text pairs but training dataset .* is classification \(task, text_pairs\)"):
        client.fine_tune(single.id, validation_dataset_id=pairs.id, backbone=str(tiny_bert))
    scores = client.upload_dataset_bytes(b"text,target\na,1\nc,2\n", name="r.csv")
    with pytest.raises(InvalidArgument, match=r"is regression but training dataset .* is classification"):
        client.fine_tune(single.id, validation_dataset_id=scores.id, backbone=str(tiny_bert))
    assert client.list_jobs().jobs == []
