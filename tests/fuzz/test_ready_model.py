"""Predict, PredictStream, Evaluate and the model lifecycle RPCs fuzzed against a READY model (a tiny BERT fine-tuned
for a few steps when the module starts), so the tokenizer, the batcher and ONNX Runtime see unicode, empty, long and
special-token texts, and any version, alias, variant and top_k. Proper status codes only, sound answers when OK, and
the server still SERVING. Marked slow: the fine-tune takes half a minute on 2 CPUs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given
from hypothesis import strategies as st

from tests.fixtures import build_tiny_bert, make_texts
from tests.fuzz.harness import MAX_TEXT_CHARS, Target, assert_healthy, fuzz_settings, invoke, serving
from tests.fuzz.strategies import integers, names, texts
from tests.integration.conftest import QUICK
from tuneserve.core.names import unprintable
from tuneserve.settings import LimitSettings
from tuneserve_client import JobState
from tuneserve_client.proto.tuneserve.v1 import models_pb2, prediction_pb2

pytestmark = pytest.mark.slow

_PREDICTION = prediction_pb2.DESCRIPTOR.services_by_name["PredictionService"]
_MODELS = models_pb2.DESCRIPTOR.services_by_name["ModelService"]
INT32 = integers(FieldDescriptor.TYPE_INT32)
VERSIONS = st.sampled_from([0, 1]) | INT32  # NOTE: the model has version 1 only
TOP_K = st.sampled_from([0, 1, 3, 4]) | INT32
# NOTE: mostly values that pass, so that most requests reach the tokenizer and ONNX Runtime
ALIASES = st.one_of(
    st.sampled_from(["", "latest", "production"]), st.sampled_from(["", "production", "nope", "LATEST"]), names()
)
VARIANTS = st.one_of(st.sampled_from(["", "fp32"]), st.sampled_from(["", "fp32", "int8", "FP32"]), names())
MAX_NAME_CHARS = LimitSettings().max_name_chars  # the fuzz server keeps the default
TEXT_BATCHES = st.one_of(st.lists(texts(MAX_TEXT_CHARS), max_size=8), st.lists(texts(MAX_TEXT_CHARS), max_size=10))


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Target, str, str]]:
    root = tmp_path_factory.mktemp("fuzz-ready")
    backbone = build_tiny_bert(root / "tiny-bert")
    with serving(fuzz_settings(root, max_concurrent_jobs=1)) as target:
        rows = make_texts({"sport": 12, "politics": 12, "tech": 12}, seed=3)
        data = "".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows).encode()
        with target.client() as client:
            train = client.upload_dataset_bytes(data, name="train.jsonl")
            hyperparameters = {**QUICK, "max_steps": 8, "eval_steps": 8}
            job = client.fine_tune(train.id, backbone=str(backbone), hyperparameters=hyperparameters)
            assert client.wait_for_job(job.id, timeout=600).state == JobState.JOB_STATE_SUCCEEDED
            client.set_model_alias(job.model_id, "production", 1)
        yield target, job.model_id, train.id


@pytest.fixture(autouse=True)
def stays_healthy(ready: tuple[Target, str, str]) -> Iterator[None]:
    yield
    assert_healthy(ready[0])


@given(texts=TEXT_BATCHES, version=VERSIONS, top_k=TOP_K, alias=ALIASES, variant=VARIANTS)
def test_predict(ready: tuple[Target, str, str], texts: list[str], version: int, top_k: int, alias: str,
                 variant: str) -> None:
    target, model_id, _ = ready
    request = prediction_pb2.PredictRequest(
        model_id=model_id, texts=texts, version=version, top_k=top_k, alias=alias, variant=variant
    )
    for response in invoke(target, _PREDICTION.methods_by_name["Predict"], [request]):
        assert len(response.predictions) == len(texts)
        for prediction in response.predictions:
            assert len(prediction.scores) == (min(top_k, 3) if top_k else 3)
            assert prediction.label == prediction.scores[0].label
            assert all(math.isfinite(s.score) and 0 <= s.score <= 1 for s in prediction.scores)


@given(batches=st.lists(st.tuples(TEXT_BATCHES, ALIASES), max_size=6))
def test_predict_stream(ready: tuple[Target, str, str], batches: list[tuple[list[str], str]]) -> None:
    target, model_id, _ = ready
    requests = [
        prediction_pb2.PredictStreamRequest(
            request_id=str(i), request=prediction_pb2.PredictRequest(model_id=model_id, texts=texts, alias=alias)
        )
        for i, (texts, alias) in enumerate(batches)
    ]
    answers = invoke(target, _PREDICTION.methods_by_name["PredictStream"], requests)
    if any(len(alias) > MAX_NAME_CHARS or unprintable(alias) for _, alias in batches):
        # documented: an over-long name, or one holding a control character, ends the stream with INVALID_ARGUMENT
        # (invoke checked the code)
        return
    assert sorted(a.request_id for a in answers) == sorted(r.request_id for r in requests)
    for answer in answers:
        assert answer.error_code not in (2, 13), answer.error_message  # UNKNOWN, INTERNAL


@given(version=VERSIONS, compare=st.lists(st.tuples(st.sampled_from([True, True, False]), VERSIONS), max_size=3))
def test_evaluate(ready: tuple[Target, str, str], version: int, compare: list[tuple[bool, int]]) -> None:
    target, model_id, dataset_id = ready
    refs = [models_pb2.ModelRef(model_id=model_id if same else "model-x", version=v) for same, v in compare]
    request = models_pb2.EvaluateRequest(model_id=model_id, dataset_id=dataset_id, version=version, compare=refs)
    for response in invoke(target, _MODELS.methods_by_name["Evaluate"], [request]):
        assert response.report.num_examples == 36 and len(response.compared) == len(compare)


@given(rpc=st.sampled_from(["LoadModel", "UnloadModel", "SetModelAlias"]), version=VERSIONS, name=VARIANTS | ALIASES)
def test_lifecycle(ready: tuple[Target, str, str], rpc: str, version: int, name: str) -> None:
    target, model_id, _ = ready
    request = {
        "LoadModel": lambda: models_pb2.LoadModelRequest(id=model_id, version=version, variant=name),
        "UnloadModel": lambda: models_pb2.UnloadModelRequest(id=model_id, version=version),
        "SetModelAlias": lambda: models_pb2.SetModelAliasRequest(id=model_id, alias=name, version=version),
    }[rpc]()
    invoke(target, _MODELS.methods_by_name[rpc], [request])
