"""Calibrated scores served identically by Predict, the Open Inference Protocol and Evaluate: a tiny exported head
whose task.json carries a temperature (as a job's calibration writes it), through the real client on a real server;
Evaluate reports the ECE of those scores and the reliability bins."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts
from tests.serving_models import TinyVersion, publish
from tuneserve.tasks import TaskParams, get_task
from tuneserve.tasks.calibration import expected_calibration_error
from tuneserve_client import Client
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

ROWS = make_texts({"sport": 8, "politics": 8, "tech": 8}, seed=3)
TEXTS = [text for text, _ in ROWS]
LABELS = ["politics", "sport", "tech"]
TEMPERATURE = 0.25   # sharpens the tiny head's flat scores: calibrated scores differ clearly from raw softmax


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, str, TinyVersion, str]]:
    root = tmp_path_factory.mktemp("calibrated")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    server = ServerThread(settings).start()
    try:
        assert server.app is not None
        model, version = server.call(publish(server.app.store, settings.storage.data_dir,
                                             TaskParams(temperature=[TEMPERATURE]), LABELS, name="calibrated"))
        rows = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS).encode()
        with Client(server.target) as client:
            dataset = client.upload_dataset_bytes(rows, name="rows.jsonl").id
        yield server, model.id, version, dataset
    finally:
        server.close()


def test_predict_oip_and_evaluate_serve_the_calibrated_scores(
    calibrated: tuple[ServerThread, str, TinyVersion, str],
) -> None:
    server, model_id, version, dataset = calibrated
    expected = version.scores(TEXTS)
    raw = get_task("classification").outputs(version.logits(TEXTS), TaskParams())
    assert np.abs(expected - raw).max() > 0.01, "the temperature must change the scores"
    with Client(server.target) as client:
        predicted = client.predict(model_id, TEXTS, top_k=0).predictions
        report = client.evaluate(model_id, dataset).report
    served = np.array([[dict((s.label, s.score) for s in p.scores)[label] for label in LABELS] for p in predicted])
    assert served == pytest.approx(expected, abs=1e-5)

    with grpc.insecure_channel(server.target) as channel:
        request = pb.ModelInferRequest(model_name=model_id, inputs=[pb.ModelInferRequest.InferInputTensor(
            name="text", datatype="BYTES", shape=[len(TEXTS), 1],
            contents=pb.InferTensorContents(bytes_contents=[t.encode() for t in TEXTS]))])
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    index = [o.name for o in response.outputs].index("probabilities")
    output = response.outputs[index]
    values = (np.frombuffer(response.raw_output_contents[index], dtype=np.float32) if response.raw_output_contents
              else np.array(output.contents.fp32_contents, dtype=np.float32))
    oip = values.reshape(len(TEXTS), len(LABELS))
    assert oip == pytest.approx(expected, abs=1e-5)

    truth = np.array([LABELS.index(y) for _, y in ROWS])
    ece = expected_calibration_error(expected.max(axis=1), expected.argmax(axis=1) == truth)
    assert report.HasField("ece") and report.ece == pytest.approx(ece, abs=1e-5)
    assert report.metrics["ece"] == pytest.approx(ece, abs=1e-5)
    assert sum(b.count for b in report.reliability) == len(TEXTS)
    assert all(0.0 <= b.confidence <= 1.0 and 0.0 <= b.accuracy <= 1.0 for b in report.reliability)
