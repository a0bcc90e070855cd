"""Every task served end to end through the real client (and CLI) on a real server: multi-label labels over their
tuned thresholds, regression values in the target's units, and text pairs, by Predict, PredictStream and the Open
Inference Protocol (the real tritonclient, tritonclient_probe.py), with the bad inputs of pairs refused naming
`text_pairs`. The models are tiny exported heads of each task (tests/serving_models.py), published into the server's
catalog as READY versions; what they must answer is the same head run in torch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts
from tests.serving_models import TinyVersion, publish
from tuneserve.tasks import TaskParams
from tuneserve_client import Client, InvalidArgument, PredictRequest, PredictStreamRequest
from tuneserve_client.cli.main import main as cli
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

PROBE = Path(__file__).with_name("tritonclient_probe.py")
TEXTS = [text for text, _ in make_texts({"sport": 3, "politics": 2, "tech": 3}, seed=11)]
PAIRS = TEXTS[::-1]
TAGS = ["aid", "medical", "shelter", "water"]
THRESHOLDS = [0.3, 0.45, 0.55, 0.7]
MODELS = {
    "classification": (TaskParams(), ["politics", "sport", "tech"]),
    "multi_label": (TaskParams("multi_label", thresholds=THRESHOLDS), TAGS),
    "regression": (TaskParams("regression", target_mean=3.0, target_std=0.5), []),
    "pair_classification": (TaskParams(text_pairs=True), ["contradiction", "entailment", "neutral"]),
    "pair_regression": (TaskParams("regression", text_pairs=True, target_mean=2.5, target_std=1.25), []),
}


@dataclass(frozen=True)
class Served:
    server: ServerThread
    models: dict[str, tuple[str, TinyVersion]]   # name -> (model id, its version)

    @property
    def target(self) -> str:
        return self.server.target

    def id(self, name: str) -> str:
        return self.models[name][0]

    def expected(self, name: str) -> np.ndarray:
        version = self.models[name][1]
        return version.scores(list(zip(TEXTS, PAIRS, strict=True)) if version.params.text_pairs else TEXTS)

    def probe(self, name: str, *steps: str) -> dict[str, Any]:
        pairs = PAIRS if self.models[name][1].params.text_pairs else []
        command = [sys.executable, str(PROBE), self.target, self.id(name), *steps, "--texts", json.dumps(TEXTS),
                   "--pairs", json.dumps(pairs)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("task-serving")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    server = ServerThread(settings).start()
    try:
        models = {}
        for seed, (name, (params, labels)) in enumerate(MODELS.items()):
            assert server.app is not None
            model, version = server.call(publish(server.app.store, settings.storage.data_dir, params, labels,
                                                 name=name, seed=seed))
            models[name] = (model.id, version)
        yield Served(server, models)
    finally:
        server.close()


def test_models_say_their_task_and_whether_they_read_pairs(served: Served) -> None:
    with Client(served.target) as client:
        seen = {name: client.get_model(served.id(name)) for name in MODELS}
    assert {name: (m.task, m.text_pairs) for name, m in seen.items()} == {
        "classification": (1, False), "multi_label": (2, False), "regression": (3, False),
        "pair_classification": (1, True), "pair_regression": (3, True),
    }


def test_multi_label_predicts_the_labels_over_their_tuned_thresholds(served: Served) -> None:
    with Client(served.target) as client:
        response = client.predict(served.id("multi_label"), TEXTS)
    expected = served.expected("multi_label")
    chosen = 0
    for prediction, row in zip(response.predictions, expected, strict=True):
        over = {TAGS[j] for j in range(len(TAGS)) if row[j] >= THRESHOLDS[j]}
        assert set(prediction.labels) == over
        assert list(prediction.labels) == sorted(over, key=lambda t: -row[TAGS.index(t)])  # best first
        assert {s.label: s.score for s in prediction.scores} == pytest.approx(dict(zip(TAGS, row, strict=True)),
                                                                               abs=1e-5)
        assert prediction.label == TAGS[int(np.argmax(row))] and prediction.value == 0.0
        chosen += len(over)
    assert 0 < chosen < len(TEXTS) * len(TAGS), "the thresholds must choose some labels, not all"


def test_regression_predicts_values_in_the_targets_units(served: Served) -> None:
    with Client(served.target) as client:
        response = client.predict(served.id("regression"), TEXTS)
    values = [p.value for p in response.predictions]
    np.testing.assert_allclose(values, served.expected("regression")[:, 0], rtol=1e-5)
    assert all(p.label == "" and not p.scores and not p.labels for p in response.predictions)


@pytest.mark.parametrize("name", ["pair_classification", "pair_regression"])
def test_pair_models_predict_each_text_with_its_pair(served: Served, name: str) -> None:
    with Client(served.target) as client:
        response = client.predict(served.id(name), TEXTS, text_pairs=PAIRS)
        swapped = client.predict(served.id(name), PAIRS, text_pairs=TEXTS)
    expected = served.expected(name)
    if MODELS[name][0].task == "regression":
        got = np.array([[p.value] for p in response.predictions])
    else:
        labels = MODELS[name][1]
        by_label = [{s.label: s.score for s in p.scores} for p in response.predictions]
        got = np.array([[scores[label] for label in labels] for scores in by_label])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert response != swapped, "the pair's order matters"


BAD_PAIRS = [
    # (model, texts, text_pairs, reason)
    ("classification", TEXTS[:2], PAIRS[:2], "reads single texts, not pairs: leave text_pairs empty"),
    ("pair_regression", TEXTS[:2], [], "reads text pairs: send text_pairs"),
    ("pair_classification", TEXTS[:2], PAIRS[:3], "text_pairs holds 3 texts and texts 2 texts"),
    ("pair_classification", TEXTS[:2], [PAIRS[0], " "], r"text_pairs\[1\] is empty or only whitespace"),
    ("pair_classification", TEXTS[:2], [PAIRS[0], "x" * 100_001],
     r"text_pairs\[1\] has 100001 characters, more than 100000 \(limit max_text_chars\)"),
]


@pytest.mark.parametrize(("name", "texts", "pairs", "reason"), BAD_PAIRS)
def test_bad_text_pairs_are_invalid_argument_naming_the_field(
    served: Served, name: str, texts: list[str], pairs: list[str], reason: str
) -> None:
    with Client(served.target) as client, pytest.raises(InvalidArgument, match=reason):
        client.predict(served.id(name), texts, text_pairs=pairs)


def test_predict_stream_serves_every_task_and_answers_bad_pairs_with_errors(served: Served) -> None:
    def request(rid: str, name: str, i: int, pairs: list[str] | None = None) -> PredictStreamRequest:
        reads_pairs = served.models[name][1].params.text_pairs
        text_pairs = pairs if pairs is not None else ([PAIRS[i]] if reads_pairs else [])
        return PredictStreamRequest(request_id=rid, request=PredictRequest(
            model_id=served.id(name), texts=[TEXTS[i]], text_pairs=text_pairs))

    requests = [request(f"{name}-{i}", name, i) for i in range(len(TEXTS)) for name in MODELS]
    requests += [request("bad-single", "regression", 0, [PAIRS[0]]), request("bad-missing", "pair_regression", 0, []),
                 request("bad-count", "pair_classification", 0, PAIRS[:2])]
    with Client(served.target) as client:
        answers = {a.request_id: a for a in client.predict_stream(iter(requests))}
    assert sorted(answers) == sorted(r.request_id for r in requests)
    for rid in ("bad-single", "bad-missing", "bad-count"):
        assert answers[rid].error_code == 3 and "text_pairs" in answers[rid].error_message, rid
    for name in MODELS:
        expected = served.expected(name)
        for i in range(len(TEXTS)):
            answer = answers[f"{name}-{i}"]
            assert answer.error_code == 0, answer.error_message
            prediction = answer.response.predictions[0]
            if MODELS[name][0].task == "regression":
                assert prediction.value == pytest.approx(float(expected[i, 0]), rel=1e-5)
            else:
                assert prediction.score == pytest.approx(float(expected[i].max()), abs=1e-5)


def test_cli_predicts_pairs_and_shows_each_tasks_answer(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--target", served.target]
    assert cli([*base, "--json", "predict", "--model", served.id("pair_regression"), TEXTS[0], TEXTS[1],
                "--text-pair", PAIRS[0], "--text-pair", PAIRS[1]]) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    expected = served.expected("pair_regression")
    assert [p["value"] for p in predictions] == pytest.approx(expected[:2, 0].tolist(), rel=1e-5)
    assert cli([*base, "--json", "predict", "--model", served.id("multi_label"), TEXTS[0]]) == 0
    assert set(json.loads(capsys.readouterr().out)["predictions"][0]) >= {"label", "labels", "scores", "value"}

    assert cli([*base, "predict", "--model", served.id("regression"), TEXTS[0]]) == 0
    out = capsys.readouterr().out
    assert "VALUE" in out and f"{served.expected('regression')[0, 0]:.4g}" in out and "SCORE" not in out
    assert cli([*base, "predict", "--model", served.id("multi_label"), TEXTS[0]]) == 0
    out = capsys.readouterr().out
    assert "LABELS" in out and "SCORES" in out

    assert cli([*base, "predict", "--model", served.id("pair_regression"), TEXTS[0], TEXTS[1],
                "--text-pair", PAIRS[0]]) == 2
    err = capsys.readouterr().err
    assert "2 TEXT arguments and 1 --text-pair options" in err
    assert cli([*base, "predict", "--model", served.id("pair_regression"), TEXTS[0]]) == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(MODELS))
def test_open_inference_through_tritonclient(served: Served, name: str) -> None:
    seen = served.probe(name, "metadata", "infer_raw", "infer_raw_flat", "infer_typed")
    params, labels = MODELS[name]
    inputs = ["text", "text_pair"] if params.text_pairs else ["text"]
    outputs = {
        "classification": [("probabilities", "FP32", len(labels)), ("label", "BYTES", 1)],
        "multi_label": [("probabilities", "FP32", len(labels)), ("labels", "BYTES", 1)],
        "regression": [("value", "FP32", 1)],
    }[params.task]
    meta = seen["metadata"]["metadata"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (n, "BYTES", ["-1", "1"]) for n in inputs]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        (n, t, ["-1", str(w)]) for n, t, w in outputs]
    config = seen["metadata"]["config"]["config"]
    assert [(i["name"], i["dims"]) for i in config["input"]] == [(n, ["1"]) for n in inputs]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        (n, "TYPE_FP32" if t == "FP32" else "TYPE_STRING", [str(w)]) for n, t, w in outputs]

    expected = served.expected(name)
    with Client(served.target) as client:
        predictions = client.predict(
            served.id(name), TEXTS, text_pairs=PAIRS if params.text_pairs else ()
        ).predictions
    for step in ("infer_raw", "infer_typed"):
        got = seen[step]["outputs"]
        assert list(got) == [n for n, _, _ in outputs], step
        first, datatype, width = outputs[0]
        assert got[first]["shape"] == [len(TEXTS), width]
        np.testing.assert_allclose(np.array(got[first]["data"]).reshape(len(TEXTS), width), expected, atol=1e-5)
        if len(outputs) > 1:
            per_row = got[outputs[1][0]]
            assert per_row["shape"] == ([len(TEXTS), 1] if step == "infer_raw" else [len(TEXTS)])
            if params.task == "multi_label":
                assert [json.loads(v) for v in per_row["data"]] == [list(p.labels) for p in predictions]
            else:
                assert per_row["data"] == [p.label for p in predictions]
    flat = seen["infer_raw_flat"]["outputs"]
    assert list(flat) == [outputs[-1][0]]
    assert flat[outputs[-1][0]]["shape"] == ([len(TEXTS)] if outputs[-1][1] == "BYTES" else [len(TEXTS), 1])


def test_open_inference_pairs_need_both_inputs_shaped_alike(served: Served) -> None:
    def ask(*inputs: tuple[str, list[bytes]]) -> str:
        request = pb.ModelInferRequest(model_name=served.id("pair_classification"))
        for name, elements in inputs:
            tensor = request.inputs.add(name=name, datatype="BYTES", shape=[len(elements)])
            tensor.contents.bytes_contents.extend(elements)
        with grpc.insecure_channel(served.target) as channel, pytest.raises(grpc.RpcError) as err:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return err.value.details()

    assert ask(("text", [b"a"])) == (
        "this model takes two inputs, BYTES 'text' and 'text_pair' (UTF-8 texts: each pair's first and second text); "
        "got inputs: 'text'")
    assert "input 'text_pair' has shape [2]; it must have the shape of input 'text', [1]" in ask(
        ("text", [b"a"]), ("text_pair", [b"b", b"c"]))
    assert "element 0 of input 'text_pair' is empty" in ask(("text", [b"a"]), ("text_pair", [b""]))
    single = pb.ModelInferRequest(model_name=served.id("regression"))
    for name in ("text", "text_pair"):
        single.inputs.add(name=name, datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"a")
    with grpc.insecure_channel(served.target) as channel, pytest.raises(grpc.RpcError) as err:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(single, timeout=30)
    assert "this model takes exactly one input, BYTES 'text' (UTF-8 texts); got inputs: 'text', 'text_pair'" in (
        err.value.details())
