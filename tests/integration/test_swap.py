"""One serving path for every entry point: while a new version's load is held, Predict, PredictStream, the Open
Inference Protocol's ModelInfer and ModelStreamInfer all keep answering "latest" from the warm old version, promptly;
once it has loaded they all move to the new one. A real server (in a thread, so the test can hold a load) with the real
ONNX Runtime opener behind a gate, the real client and the `inference` stubs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import ServerThread, make_settings
from tests.fixtures import write_text_dataset
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tuneserve.engines.runtime import open_runtime
from tuneserve_client import AsyncClient, Client, JobState, PredictRequest, PredictStreamRequest
from tuneserve_client.proto.inference import grpc_service_pb2 as pb
from tuneserve_client.proto.inference import grpc_service_pb2_grpc as pb_grpc

ENTRY_POINTS = ("Predict", "PredictStream", "ModelInfer", "ModelStreamInfer")


@dataclass
class LoadGate:
    """The real runtime opener; a version being held waits (on the cache's loading thread) until released."""

    held: dict[int, threading.Event] = field(default_factory=dict)

    def hold(self, version: int) -> threading.Event:
        self.held[version] = threading.Event()
        return self.held[version]

    def __call__(self, version_dir: Path, variant: str, **options: Any) -> Any:
        gate = self.held.get(int(version_dir.name))
        if gate is not None:
            assert gate.wait(120), "the test never released the load"
        return open_runtime(version_dir, variant, **options)


@dataclass
class Swapping:
    server: ServerThread
    gate: LoadGate
    model_id: str
    dataset_id: str
    backbone: str


@pytest.fixture(scope="module")
def swapping(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swapping]:
    root = tmp_path_factory.mktemp("swap")
    gate = LoadGate()
    server = ServerThread(make_settings(root / "data", tmp_path_factory.getbasetemp()), runtime_opener=gate).start()
    try:
        with Client(server.target) as client:
            train = client.upload_dataset(write_text_dataset(root / "train.jsonl", TRAIN_COUNTS, seed=1))
            job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="swap", hyperparameters=QUICK)
            assert client.wait_for_job(job.id, timeout=300).state == JobState.JOB_STATE_SUCCEEDED
        yield Swapping(server, gate, job.model_id, train.id, str(tiny_bert))
    finally:
        server.close()


async def _answered_by(client: AsyncClient, oip: pb_grpc.GRPCInferenceServiceStub, model_id: str) -> dict[str, int]:
    """The version each entry point answered "latest" with (no version, no alias)."""
    predict = await client.predict(model_id, ["a text to classify"])
    stream = [a async for a in client.predict_stream([
        PredictStreamRequest(request_id="s", request=PredictRequest(model_id=model_id, texts=["a streamed text"]))
    ])]
    assert stream[0].error_message == ""
    infer = await oip.ModelInfer(_infer_request(model_id))
    streamed = [a async for a in oip.ModelStreamInfer(iter([_infer_request(model_id)]))]
    assert streamed[0].error_message == ""
    return {
        "Predict": predict.model_version,
        "PredictStream": stream[0].response.model_version,
        "ModelInfer": int(infer.model_version),
        "ModelStreamInfer": int(streamed[0].infer_response.model_version),
    }


def _infer_request(model_id: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model_id)  # model_version "": the latest READY version
    request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"an inferred text")
    return request


async def _loaded(client: AsyncClient, model_id: str, version: int) -> bool:
    return any(v.version == version and v.loaded for v in (await client.get_model(model_id)).versions)


async def test_every_entry_point_keeps_the_old_version_until_the_new_one_has_loaded(swapping: Swapping) -> None:
    async with AsyncClient(swapping.server.target, timeout=30) as client, \
            grpc.aio.insecure_channel(swapping.server.target) as channel:
        oip = pb_grpc.GRPCInferenceServiceStub(channel)
        old = (await client.get_model(swapping.model_id)).latest_version
        assert await _answered_by(client, oip, swapping.model_id) == dict.fromkeys(ENTRY_POINTS, old)
        release = swapping.gate.hold(old + 1)
        try:
            job = await client.fine_tune(
                swapping.dataset_id, backbone=swapping.backbone, model_id=swapping.model_id,
                hyperparameters={**QUICK, "max_steps": 8},
            )
            done = await client.wait_for_job(job.id, timeout=300)
            assert done.state == JobState.JOB_STATE_SUCCEEDED and done.model_version == old + 1, done.error
            for _ in range(3):  # READY, loading in the background: every entry point answers from the old version
                answered = await asyncio.wait_for(_answered_by(client, oip, swapping.model_id), 10)
                assert answered == dict.fromkeys(ENTRY_POINTS, old)
            assert not await _loaded(client, swapping.model_id, old + 1)
        finally:
            release.set()
        for _ in range(300):
            if await _loaded(client, swapping.model_id, old + 1):
                break
            await asyncio.sleep(0.1)
        assert await _answered_by(client, oip, swapping.model_id) == dict.fromkeys(ENTRY_POINTS, old + 1)
        model = await client.get_model(swapping.model_id)
    assert {v.version: v.loaded for v in model.versions} == {old: False, old + 1: True}  # the old one unloaded
