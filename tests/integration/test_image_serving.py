"""An image model end to end through the real client on a real server: a zip of class folders fine-tunes a tiny
EfficientNet-Lite (briefly pretrained on other synthetic shapes, so that it clearly learns), then Predict, PredictStream, Evaluate, the CLI and the Open Inference Protocol (the
real tritonclient) take encoded image bytes; text sent to it, or an image dataset sent where text belongs, is
INVALID_ARGUMENT naming what to send instead."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ServerThread, make_settings
from tests.fixtures import IMAGE_LABELS, make_image, pretrained_tiny_efficientnet, write_text_dataset
from tests.integration.conftest import QUICK
from tuneserve_client import Client, InvalidArgument, JobState, Modality, PredictRequest, PredictStreamRequest
from tuneserve_client.cli.main import main

PROBE = Path(__file__).with_name("tritonclient_image_probe.py")
LABELS = sorted(IMAGE_LABELS)
MAX_PIXELS = 200 * 200
QUICK_IMAGES = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "head_learning_rate": 1e-2, "refit": "false"}


@dataclass
class Served:
    server: ServerThread
    model_id: str
    dataset_id: str
    text_dataset_id: str
    text_model_id: str
    images: list[bytes]          # held out: not in the training zip

    def client(self) -> Client:
        return Client(self.server.target, timeout=60)


def zip_of(counts: dict[str, int], seed: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for label, count in counts.items():
            for i in range(count):
                archive.writestr(f"shapes/{label}/{i:03d}.png", make_image(label, seed=seed * 1000 + i))
    return out.getvalue()


@pytest.fixture(scope="module")
def served(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("image-serving")
    # NOTE: a random-init backbone learns nothing in these few steps (predictions all one class), which would make
    # every batched-vs-unbatched comparison below trivially true
    backbone = pretrained_tiny_efficientnet(root / "backbones" / "tiny-shapes")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    settings.limits.max_image_pixels = MAX_PIXELS
    server = ServerThread(settings).start()
    try:
        with Client(server.target, timeout=60) as client:
            train = client.upload_dataset_bytes(zip_of({label: 10 for label in LABELS}, seed=1), name="shapes.zip")
            text = client.upload_dataset(write_text_dataset(root / "text.jsonl", {"a": 6, "b": 6}, seed=1))
            job = client.fine_tune(train.id, backbone=str(backbone), hyperparameters=QUICK_IMAGES)
            text_job = client.fine_tune(text.id, backbone=str(tiny_bert), hyperparameters=QUICK)
            for submitted in (job, text_job):
                finished = client.wait_for_job(submitted.id, timeout=600)
                assert finished.state == JobState.JOB_STATE_SUCCEEDED, finished.error
        images = [make_image(label, seed=9000 + i, fmt=fmt) for i, (label, fmt) in
                  enumerate(zip(LABELS, ["PNG", "JPEG", "WEBP"], strict=True))]
        yield Served(server, job.model_id, train.id, text.id, text_job.model_id, images)
    finally:
        server.close()


def scores(predictions: object) -> list[list[float]]:
    """Each prediction's class scores in LABELS order."""
    return [[{s.label: s.score for s in p.scores}[label] for label in LABELS] for p in predictions]  # type: ignore


def test_the_model_is_an_image_model(served: Served) -> None:
    with served.client() as client:
        model = client.get_model(served.model_id)
    assert model.modality == Modality.MODALITY_IMAGE
    assert list(model.labels) == LABELS


def test_the_model_learned_the_shapes(served: Served) -> None:
    """Held-out images well above chance (1/3), every class predicted: batched-vs-unbatched checks below compare
    real, varied predictions, not one constant answer."""
    with served.client() as client:
        held_out = client.upload_dataset_bytes(zip_of({label: 8 for label in LABELS}, seed=3), name="held_out.zip")
        report = client.evaluate(served.model_id, held_out.id).report
        predicted = {p.label for p in client.predict(served.model_id, images=served.images).predictions}
    assert report.accuracy >= 0.9, report
    assert predicted == set(LABELS)


def test_predict_takes_image_bytes(served: Served) -> None:
    with served.client() as client:
        response = client.predict(served.model_id, images=served.images, top_k=2)
        alone = [client.predict(served.model_id, images=[image]).predictions[0] for image in served.images]
    assert len(response.predictions) == 3
    for prediction, single in zip(response.predictions, alone, strict=True):
        assert prediction.label in LABELS and len(prediction.scores) == 2
        assert prediction.label == single.label
        assert prediction.score == pytest.approx(single.score, abs=1e-5)   # batched = unbatched
        assert sum(s.score for s in single.scores) == pytest.approx(1.0, abs=1e-5)


def _big_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (201, 200), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"texts": ["a red square"]}, "is an image model: send images, not texts"),
        ({"images": [b"not an image at all"]}, "image 0: not a supported image"),
        ({"images": [make_image("blue_bar"), make_image("blue_bar", fmt="JPEG")[:-100]]}, "image 1: corrupt or trunc"),
        ({"images": [_big_png()]}, "image 0: image is 201x200 = 40200 pixels, more than 40000 .limit max_image_pix"),
        ({"images": [b""]}, r"images\[0\] is empty"),
        ({"images": [make_image("blue_bar")], "texts": ["x"]}, "not both"),
        ({"images": [make_image("blue_bar")] * 257}, "257 images in one request, more than 256"),
    ],
)
def test_bad_predict_requests(served: Served, request_fields: dict[str, list], message: str) -> None:
    with served.client() as client:
        with pytest.raises(InvalidArgument, match=message):
            client.predict(served.model_id, **request_fields)
        assert client.predict(served.model_id, images=served.images[:1]).predictions  # still serving


def test_a_text_model_refuses_images(served: Served) -> None:
    with served.client() as client:
        with pytest.raises(InvalidArgument, match="is a text model: send texts, not images"):
            client.predict(served.text_model_id, images=served.images)
        with pytest.raises(InvalidArgument, match="holds image rows but model .* is for text inputs"):
            client.evaluate(served.text_model_id, served.dataset_id)
        assert client.evaluate(served.text_model_id, served.text_dataset_id).report.num_examples == 12


def test_predict_stream_with_images(served: Served) -> None:
    requests = [
        PredictStreamRequest(request_id="good", request=PredictRequest(model_id=served.model_id, images=served.images)),
        PredictStreamRequest(request_id="text", request=PredictRequest(model_id=served.model_id, texts=["x"])),
        PredictStreamRequest(request_id="bad", request=PredictRequest(model_id=served.model_id, images=[b"xx"])),
    ]
    with served.client() as client:
        answers = {a.request_id: a for a in client.predict_stream(requests)}
        expected = scores(client.predict(served.model_id, images=served.images).predictions)
    assert np.asarray(scores(answers["good"].response.predictions)) == pytest.approx(np.asarray(expected), abs=1e-5)
    assert "send images, not texts" in answers["text"].error_message
    assert "image 0: not a supported image" in answers["bad"].error_message


def test_evaluate_reads_the_stored_images(served: Served) -> None:
    with served.client() as client:
        report = client.evaluate(served.model_id, served.dataset_id).report
        with pytest.raises(InvalidArgument, match=f"dataset '{served.text_dataset_id}' holds text rows but model"):
            client.evaluate(served.model_id, served.text_dataset_id)
    assert report.num_examples == 30
    assert list(report.confusion_matrix.labels) == LABELS
    assert sum(sum(row.counts) for row in report.confusion_matrix.rows) == 30
    assert report.num_unknown_labels == 0


def test_fine_tune_refuses_a_dataset_of_the_other_modality(
    served: Served, tiny_efficientnet: Path, tiny_bert: Path
) -> None:
    with served.client() as client:
        with pytest.raises(InvalidArgument, match=f"dataset '{served.text_dataset_id}' .* holds text rows but "
                                                  f"backbone '.*{tiny_efficientnet.name}' is for image inputs"):
            client.fine_tune(served.text_dataset_id, backbone=str(tiny_efficientnet))
        with pytest.raises(InvalidArgument, match=f"dataset '{served.dataset_id}' .* holds image rows but "
                                                  f"backbone '.*{tiny_bert.name}' is for text inputs"):
            client.fine_tune(served.dataset_id, backbone=str(tiny_bert))


def test_cli_predicts_image_files(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for i, image in enumerate(served.images):
        files += ["--image", str(tmp_path / f"{i}.img")]
        (tmp_path / f"{i}.img").write_bytes(image)
    argv = ["--target", served.server.target]
    assert main([*argv, "--json", "predict", "--model", served.model_id, *files]) == 0
    answer = json.loads(capsys.readouterr().out)
    with served.client() as client:
        expected = client.predict(served.model_id, images=served.images)
    assert [p["label"] for p in answer["predictions"]] == [p.label for p in expected.predictions]
    assert main([*argv, "predict", "--model", served.model_id, *files[:2]]) == 0
    assert "IMAGE" in capsys.readouterr().out
    assert main([*argv, "predict", "--model", served.model_id, "some text", *files[:2]]) == 2
    assert "one kind only" in capsys.readouterr().err
    assert main([*argv, "predict", "--model", served.model_id, "--image", str(tmp_path / "missing.png")]) == 2


def test_open_inference_protocol_image_input_through_tritonclient(served: Served, tmp_path: Path) -> None:
    files = []
    for i, image in enumerate(served.images):
        (tmp_path / f"{i}.img").write_bytes(image)
        files.append(str(tmp_path / f"{i}.img"))
    command = [sys.executable, str(PROBE), served.server.target, served.model_id, *files]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [i["name"] for i in seen["metadata"]["metadata"]["inputs"]] == ["image"]
    assert [i["name"] for i in seen["metadata"]["config"]["config"]["input"]] == ["image"]
    with served.client() as client:
        expected = client.predict(served.model_id, images=served.images).predictions
    batched = seen["infer_batched"]
    probs = np.asarray(batched["probabilities"]["data"]).reshape(batched["probabilities"]["shape"])
    assert probs == pytest.approx(np.asarray(scores(expected)), abs=1e-5)
    assert batched["label"]["shape"] == [3, 1]
    assert batched["label"]["data"] == [p.label for p in expected]
    assert seen["infer_flat_label"]["label"]["data"] == [p.label for p in expected]
    assert seen["text_input"]["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "takes exactly one input, BYTES 'image'" in seen["text_input"]["error"]["message"]
    assert seen["corrupt_image"]["error"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "image 1" in seen["corrupt_image"]["error"]["message"]
