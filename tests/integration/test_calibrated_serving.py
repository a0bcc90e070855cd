"""Calibrated scores served identically by Predict, the Open Inference Protocol and Evaluate: tiny exported heads
whose task.json carries a calibration as a job writes it (a classifier's temperature; a multi-label model's Platt
scaling, a temperature and a bias per label, with thresholds), through the real client on a real server; Evaluate
reports the ECE of those scores and the reliability bins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts
from tests.serving_models import TinyVersion, publish
from tuneserve.tasks import TaskParams, get_task
from tuneserve.tasks.calibration import consistency, expected_calibration_error
from tuneserve_client import Client, EvaluationReport, Prediction
from tuneserve_client.cli.main import main as cli
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

ROWS = make_texts({"sport": 8, "politics": 8, "tech": 8}, seed=3)
TEXTS = [text for text, _ in ROWS]
LABELS = ["politics", "sport", "tech"]
TEMPERATURE = 0.25   # sharpens the tiny head's flat scores: calibrated scores differ clearly from raw softmax
# multi-label: every third row also carries "tech"; Platt scaling whose biases move each label's scores clearly
TAGGED = [[y, *(["tech"] if i % 3 == 0 and y != "tech" else [])] for i, (_, y) in enumerate(ROWS)]
PLATT = TaskParams("multi_label", thresholds=[0.3, 0.5, 0.7], temperature=[0.5, 2.0, 1.0], bias=[-1.0, 1.5, 0.5])


@dataclass(frozen=True)
class Served:
    server: ServerThread
    model_id: str
    version: TinyVersion
    dataset: str


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    root = tmp_path_factory.mktemp("calibrated")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    server = ServerThread(settings).start()
    try:
        assert server.app is not None
        served = {}
        for task, params, targets in (
            ("classification", TaskParams(temperature=[TEMPERATURE]), [{"label": y} for _, y in ROWS]),
            ("multi_label", PLATT, [{"labels": tags} for tags in TAGGED]),
        ):
            model, version = server.call(publish(server.app.store, settings.storage.data_dir, params, LABELS,
                                                 name=f"calibrated-{task}"))
            rows = "".join(json.dumps({"text": t, **target}) + "\n" for t, target in zip(TEXTS, targets, strict=True))
            with Client(server.target) as client:
                dataset = client.upload_dataset_bytes(rows.encode(), name=f"{task}.jsonl").id
            served[task] = Served(server, model.id, version, dataset)
        yield served
    finally:
        server.close()


def test_predict_oip_and_evaluate_serve_the_calibrated_scores(calibrated: dict[str, Served]) -> None:
    served = calibrated["classification"]
    expected = served.version.scores(TEXTS)
    raw = get_task("classification").outputs(served.version.logits(TEXTS), TaskParams())
    assert np.abs(expected - raw).max() > 0.01, "the temperature must change the scores"
    predicted, report = _predict_and_evaluate(served)
    assert _scores(predicted) == pytest.approx(expected, abs=1e-5)
    assert _infer(served, "probabilities").reshape(len(TEXTS), len(LABELS)) == pytest.approx(expected, abs=1e-5)

    truth = np.array([LABELS.index(y) for _, y in ROWS])
    ece = expected_calibration_error(expected.max(axis=1), expected.argmax(axis=1) == truth)
    assert report.HasField("ece") and report.ece == pytest.approx(ece, abs=1e-5)
    assert report.metrics["ece"] == pytest.approx(ece, abs=1e-5)
    assert sum(b.count for b in report.reliability) == len(TEXTS)
    assert all(0.0 <= b.confidence <= 1.0 and 0.0 <= b.accuracy <= 1.0 for b in report.reliability)
    _assert_consistency(report, ece)


def test_cli_evaluate_prints_the_ece_beside_a_calibrated_models(
    calibrated: dict[str, Served], capsys: pytest.CaptureFixture[str]
) -> None:
    served = calibrated["classification"]
    assert cli(["--target", served.server.target, "evaluate", "--model", served.model_id, "--dataset",
                served.dataset]) == 0
    _, report = _predict_and_evaluate(served)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("calibration:"))
    assert f"ECE {report.ece:.4f} (a perfectly calibrated model would show about {report.ece_if_calibrated:.4f}" in line
    assert f"p = {report.ece_p_value:.3g}: " in line


def test_multi_label_platt_scores_and_decisions_are_the_same_over_predict_oip_and_evaluate(
    calibrated: dict[str, Served],
) -> None:
    """sigmoid(logit / T + b) per label from Predict, the Open Inference Protocol and Evaluate, the labels over the
    tuned thresholds of those scores, and Evaluate's ECE of every (row, label) probability."""
    served = calibrated["multi_label"]
    task, logits = get_task("multi_label"), served.version.logits(TEXTS)
    expected = served.version.scores(TEXTS)
    temperature_only = task.outputs(logits, TaskParams("multi_label", temperature=PLATT.temperature))
    assert np.abs(expected - temperature_only).max() > 0.05, "the biases must change the scores"
    predicted, report = _predict_and_evaluate(served)
    assert _scores(predicted) == pytest.approx(expected, abs=1e-5)
    oip = _infer(served, "probabilities").reshape(len(TEXTS), len(LABELS))
    assert oip == pytest.approx(expected, abs=1e-5)

    decided = expected >= np.array(PLATT.thresholds)
    clear = np.abs(expected - np.array(PLATT.thresholds)) > 1e-4
    assert clear.all(), "no score may sit on its threshold, or the decisions could differ by rounding"
    oip_labels = [json.loads(b) for b in _infer(served, "labels")]
    for i in range(len(TEXTS)):
        wanted = {LABELS[j] for j in np.flatnonzero(decided[i])}
        assert set(predicted[i].labels) == wanted and set(oip_labels[i]) == wanted
    assert 0 < decided.sum() < decided.size, "the thresholds must pick some labels and leave others"

    truth = np.array([[label in tags for label in LABELS] for tags in TAGGED], dtype=np.float64)
    ece = expected_calibration_error(expected, truth)
    assert report.HasField("ece") and report.ece == pytest.approx(ece, abs=1e-5)
    assert sum(b.count for b in report.reliability) == len(TEXTS) * len(LABELS)
    _assert_consistency(report, ece)
    assert report.metrics["micro_f1"] == pytest.approx(task.metrics(expected, TAGGED, LABELS, PLATT)["micro_f1"])


def _assert_consistency(report: EvaluationReport, ece: float) -> None:
    """Evaluate's consistency test is the one of its own reliability bins, each bin's band a range of accuracies, and
    neither figure is among the metrics a comparison takes deltas of."""
    bins = [(b.confidence, b.accuracy, b.count) for b in report.reliability]
    wanted = consistency(bins, ece)
    assert report.ece_if_calibrated == pytest.approx(wanted.ece_if_calibrated, abs=1e-4)
    assert report.ece_p_value == pytest.approx(wanted.p_value, abs=1e-3)
    assert all(0.0 <= b.calibrated_low <= b.calibrated_high <= 1.0 for b in report.reliability)
    served = [x for b in report.reliability for x in (b.calibrated_low, b.calibrated_high)]
    assert served == pytest.approx([x for band in wanted.bands for x in band])
    assert not {"ece_if_calibrated", "ece_p_value"} & set(report.metrics)


def _predict_and_evaluate(served: Served) -> tuple[list[Prediction], EvaluationReport]:
    with Client(served.server.target) as client:
        predicted = list(client.predict(served.model_id, TEXTS, top_k=0).predictions)
        report = client.evaluate(served.model_id, served.dataset).report
    return predicted, report


def _scores(predicted: list[Prediction]) -> np.ndarray:
    return np.array([[dict((s.label, s.score) for s in p.scores)[label] for label in LABELS] for p in predicted])


def _infer(served: Served, name: str) -> np.ndarray:
    """One output of an Open Inference ModelInfer call over TEXTS: FP32 values, or BYTES items."""
    with grpc.insecure_channel(served.server.target) as channel:
        request = pb.ModelInferRequest(model_name=served.model_id, inputs=[pb.ModelInferRequest.InferInputTensor(
            name="text", datatype="BYTES", shape=[len(TEXTS), 1],
            contents=pb.InferTensorContents(bytes_contents=[t.encode() for t in TEXTS]))])
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    index = [o.name for o in response.outputs].index(name)
    output = response.outputs[index]
    if output.datatype == "BYTES":
        if not response.raw_output_contents:
            return np.array(list(output.contents.bytes_contents), dtype=object)
        raw, items = response.raw_output_contents[index], []
        while raw:
            size = int.from_bytes(raw[:4], "little")
            items.append(raw[4:4 + size])
            raw = raw[4 + size:]
        return np.array(items, dtype=object)
    if response.raw_output_contents:
        return np.frombuffer(response.raw_output_contents[index], dtype=np.float32)
    return np.array(output.contents.fp32_contents, dtype=np.float32)
