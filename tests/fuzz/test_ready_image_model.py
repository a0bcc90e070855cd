"""Predict, PredictStream and the Open Inference Protocol's ModelInfer fuzzed against a READY image model (a tiny
EfficientNet-Lite fine-tuned for a few steps when the module starts): valid, truncated, bit-flipped and random image
bytes, other formats, texts where images belong. Proper status codes only (OK or INVALID_ARGUMENT for bad bytes),
sound answers when OK, and the server still SERVING. Marked slow: the fine-tune takes a minute on 2 CPUs."""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterator

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures import IMAGE_LABELS, make_image, tiny_efficientnet
from tests.fuzz.harness import Target, assert_healthy, fuzz_settings, invoke, serving
from tests.fuzz.image_strategies import accepted_images, image_bytes
from tuneserve_client import JobState
from tuneserve_client.proto.inference import grpc_service_pb2 as oip_pb
from tuneserve_client.proto.tuneserve.v1 import prediction_pb2

pytestmark = pytest.mark.slow

_PREDICTION = prediction_pb2.DESCRIPTOR.services_by_name["PredictionService"]
_OIP = oip_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# NOTE: half the batches are all acceptable images, so that many requests get through to ONNX Runtime
IMAGES = st.one_of(st.lists(accepted_images(), min_size=1, max_size=6), st.lists(image_bytes(), max_size=6))


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Target, str]]:
    root = tmp_path_factory.mktemp("fuzz-ready-image")
    backbone = tiny_efficientnet(root / "tiny-efficientnet")
    settings = fuzz_settings(root, max_concurrent_jobs=1)
    settings.limits.max_image_pixels = 20 * 20
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for label in IMAGE_LABELS:
            for i in range(6):
                archive.writestr(f"{label}/{i}.png", make_image(label, size=16, seed=i))
    with serving(settings) as target:
        with target.client() as client:
            train = client.upload_dataset_bytes(out.getvalue(), name="shapes.zip")
            hyperparameters = {"max_steps": 4, "batch_size": 8, "eval_steps": 4}
            job = client.fine_tune(train.id, backbone=str(backbone), hyperparameters=hyperparameters)
            assert client.wait_for_job(job.id, timeout=600).state == JobState.JOB_STATE_SUCCEEDED
        yield target, job.model_id


@pytest.fixture(autouse=True)
def stays_healthy(ready: tuple[Target, str]) -> Iterator[None]:
    yield
    assert_healthy(ready[0])


def _sound(response: prediction_pb2.PredictResponse, count: int) -> None:
    assert len(response.predictions) == count
    for prediction in response.predictions:
        assert prediction.label == prediction.scores[0].label
        assert all(math.isfinite(s.score) and 0 <= s.score <= 1 for s in prediction.scores)


@given(images=IMAGES, texts=st.sampled_from([[], [], ["a text"]]))
def test_predict(ready: tuple[Target, str], images: list[bytes], texts: list[str]) -> None:
    target, model_id = ready
    request = prediction_pb2.PredictRequest(model_id=model_id, images=images, texts=texts)
    for response in invoke(target, _PREDICTION.methods_by_name["Predict"], [request]):
        _sound(response, len(images))


PROPER_STREAM_CODES = {c.value[0] for c in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
                                             grpc.StatusCode.RESOURCE_EXHAUSTED)}


@given(batches=st.lists(IMAGES, max_size=5))
def test_predict_stream(ready: tuple[Target, str], batches: list[list[bytes]]) -> None:
    target, model_id = ready
    requests = [
        prediction_pb2.PredictStreamRequest(
            request_id=str(i), request=prediction_pb2.PredictRequest(model_id=model_id, images=images)
        )
        for i, images in enumerate(batches)
    ]
    answers = invoke(target, _PREDICTION.methods_by_name["PredictStream"], requests)
    assert sorted(a.request_id for a in answers) == sorted(r.request_id for r in requests)
    for answer in answers:
        # NOTE: RESOURCE_EXHAUSTED is the documented answer when a burst fills the model's batching queue
        assert answer.error_code in PROPER_STREAM_CODES, (answer.error_code, answer.error_message)
        if not answer.error_code:
            _sound(answer.response, len(batches[int(answer.request_id)]))


@given(images=IMAGES, name=st.sampled_from(["image", "image", "image", "text"]), raw=st.booleans())
def test_model_infer(ready: tuple[Target, str], images: list[bytes], name: str, raw: bool) -> None:
    target, model_id = ready
    request = oip_pb.ModelInferRequest(model_name=model_id)
    tensor = request.inputs.add(name=name, datatype="BYTES", shape=[len(images), 1])
    if raw:
        request.raw_input_contents.append(b"".join(len(b).to_bytes(4, "little") + b for b in images))
    else:
        tensor.contents.bytes_contents.extend(images)
    for response in invoke(target, _OIP.methods_by_name["ModelInfer"], [request]):
        assert [o.name for o in response.outputs] == ["probabilities", "label"]
        assert list(response.outputs[0].shape) == [len(images), len(IMAGE_LABELS)]
