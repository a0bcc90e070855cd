"""Serving through the real server and client: dynamic batching (batched == unbatched), the queue limit, deadlines,
PredictStream, hot swaps under load (new version, moved alias) with zero failed requests, variants, LRU unloading,
load/unload, aliases across a restart, and the CLI commands. One trained model (tiny BERT) serves the module."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts, write_text_dataset
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tuneserve_client import (
    AsyncClient,
    Client,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    JobState,
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    ResourceExhausted,
    TuneServeError,
)
from tuneserve_client.cli.main import main as cli

FEW = {**QUICK, "max_steps": 8, "eval_steps": 8}  # later versions: only the swap matters, not their quality
TEXTS = [text for text, _ in make_texts({"sport": 11, "politics": 11, "tech": 10}, seed=5)]  # 32, 5-12 words


@dataclass
class Served:
    server: ServerThread
    model_id: str
    dataset_id: str
    backbone: str

    @property
    def target(self) -> str:
        return self.server.target

    def version_dir(self, version: int) -> Path:
        return self.server.settings.storage.data_dir / "models" / self.model_id / str(version)

    async def train_version(self, client: AsyncClient) -> int:
        job = await client.fine_tune(self.dataset_id, backbone=self.backbone, model_id=self.model_id, hyperparameters=FEW)
        done = await client.wait_for_job(job.id, timeout=300)
        assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
        return done.model_version

    async def ensure_versions(self, client: AsyncClient, count: int) -> None:
        while len((await client.get_model(self.model_id)).versions) < count:
            await self.train_version(client)


@pytest.fixture(scope="module")
def served(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serving")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    settings.batching.max_queue_size = 64
    settings.inference.max_loaded_models = 2
    server = ServerThread(settings).start()
    try:
        with Client(server.target) as client:
            train = client.upload_dataset(write_text_dataset(root / "train.jsonl", TRAIN_COUNTS, seed=1))
            job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="serving", hyperparameters=QUICK)
            assert client.wait_for_job(job.id, timeout=300).state == JobState.JOB_STATE_SUCCEEDED
        served = Served(server, job.model_id, train.id, str(tiny_bert))
        # NOTE: the worker's int8 export may be off; write the variant the way its contract (spec.ARTIFACTS) says
        write_int8_variant(served.version_dir(1), served=True)
        yield served
    finally:
        server.close()


def write_int8_variant(version_dir: Path, *, served: bool, reason: str = "") -> None:
    from tuneserve.engines.export.quantize import quantize_int8

    quantize_int8(version_dir / "model.onnx", version_dir / "model.int8.onnx", modality="text")
    report = {"fp32": {"macro_f1": 0.9, "served": True}, "int8": {"macro_f1": 0.895, "served": served, "reason": reason}}
    (version_dir / "variants.json").write_text(json.dumps(report))


def scores(response: PredictResponse) -> list[dict[str, float]]:
    return [{s.label: s.score for s in p.scores} for p in response.predictions]


def batch_stats(served: Served) -> tuple[float, float]:
    """(texts, batches) run so far, from the Prometheus endpoint."""
    assert served.server.app is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{served.server.app.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = {"sum": 0.0, "count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "tuneserve_inference_batch_size":
            for sample in family.samples:
                kind = sample.name.rsplit("_", 1)[-1]
                if kind in values and sample.labels.get("model") == served.model_id:
                    values[kind] += sample.value
    return values["sum"], values["count"]


async def test_batched_results_equal_unbatched_under_concurrent_load(served: Served) -> None:
    async with AsyncClient(served.target) as client:
        alone = [await client.predict(served.model_id, [text], version=1) for text in TEXTS]  # batches of one
        texts_before, batches_before = batch_stats(served)
        together = await asyncio.gather(*(client.predict(served.model_id, [t], version=1) for t in TEXTS))
        texts_after, batches_after = batch_stats(served)
    assert texts_after - texts_before == len(TEXTS)
    assert batches_after - batches_before < len(TEXTS), "no batch held more than one text"
    for one, batched in zip(alone, together, strict=True):
        expected, got = scores(one)[0], scores(batched)[0]
        assert expected.keys() == got.keys()
        np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=1e-5)


async def test_a_full_queue_answers_resource_exhausted(served: Served) -> None:
    async with AsyncClient(served.target) as client:
        calls = [client.predict(served.model_id, TEXTS[:16] * 3, version=1) for _ in range(24)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        rejected = [r for r in results if isinstance(r, ResourceExhausted)]
        assert rejected, "24 requests of 48 texts never filled a queue of 64"
        assert "48 more would exceed batching.max_queue_size = 64; retry with backoff" in rejected[0].details
        assert all(isinstance(r, (PredictResponse, ResourceExhausted)) for r in results), results
        assert all(len(r.predictions) == 48 for r in results if isinstance(r, PredictResponse))
        assert len((await client.predict(served.model_id, TEXTS[:1])).predictions) == 1  # still serving


async def test_an_expired_deadline_is_answered_and_the_server_goes_on(served: Served) -> None:
    async with AsyncClient(served.target, timeout=0.001) as hurried, AsyncClient(served.target) as client:
        busy = [client.predict(served.model_id, TEXTS[:16], version=1) for _ in range(3)]
        outcomes = await asyncio.gather(hurried.predict(served.model_id, TEXTS, version=1), *busy, return_exceptions=True)
        assert isinstance(outcomes[0], DeadlineExceeded)
        assert all(isinstance(r, PredictResponse) for r in outcomes[1:])


def test_predict_stream_answers_every_request_and_errors_do_not_end_it(served: Served) -> None:
    def request(i: int, **fields: object) -> PredictStreamRequest:
        return PredictStreamRequest(
            request_id=f"r{i}", request=PredictRequest(model_id=served.model_id, texts=[TEXTS[i]], **fields)
        )

    requests = [request(i, version=1) for i in range(24)]
    requests[5] = request(5, variant="fp16")
    requests[9] = PredictStreamRequest(request_id="r9", request=PredictRequest(model_id="model-0", texts=["x"]))
    requests[13] = PredictStreamRequest(request_id="r13", request=PredictRequest(model_id=served.model_id))
    with Client(served.target) as client:
        answers = {a.request_id: a for a in client.predict_stream(iter(requests))}  # a generator: read on a thread
        unary = client.predict(served.model_id, [TEXTS[0]], version=1)
    assert sorted(answers) == sorted(f"r{i}" for i in range(24))
    assert (answers["r5"].error_code, answers["r9"].error_code, answers["r13"].error_code) == (3, 5, 3)
    assert "variant 'fp16' is not one of: fp32, int8" in answers["r5"].error_message
    assert "model 'model-0' not found" in answers["r9"].error_message
    assert "texts is empty" in answers["r13"].error_message
    ok = [a for rid, a in answers.items() if rid not in {"r5", "r9", "r13"}]
    assert all(a.error_code == 0 and len(a.response.predictions) == 1 for a in ok)
    first = scores(answers["r0"].response)[0]
    np.testing.assert_allclose([first[k] for k in scores(unary)[0]], list(scores(unary)[0].values()), atol=1e-5)


async def _load_loop(client: AsyncClient, served: Served, until_version: int, **params: object) -> list[list[int]]:
    """4 callers predicting until each has been answered by `until_version`; returns the versions each saw."""
    seen: list[list[int]] = [[] for _ in range(4)]

    async def caller(i: int) -> None:
        while not seen[i] or seen[i][-1] != until_version:
            response = await client.predict(served.model_id, [TEXTS[i]], **params)  # type: ignore[arg-type]
            seen[i].append(response.model_version)
            await asyncio.sleep(0.02)  # NOTE: leave the CPUs to the fine-tune running meanwhile

    await asyncio.wait_for(asyncio.gather(*(caller(i) for i in range(4))), 300)
    return seen


async def test_a_new_version_replaces_latest_under_load_with_zero_errors(served: Served) -> None:
    async with AsyncClient(served.target, timeout=30) as client:
        old = (await client.get_model(served.model_id)).latest_version
        await client.predict(served.model_id, ["warm"])
        training = asyncio.ensure_future(served.train_version(client))
        seen = await _load_loop(client, served, old + 1)  # any failed predict raises here
        assert await training == old + 1
        model = await client.get_model(served.model_id)
    for versions in seen:
        assert versions == sorted(versions) and versions[0] == old and versions[-1] == old + 1
    loaded = {v.version: v.loaded for v in model.versions}
    assert loaded[old + 1] and not loaded[old]  # the old one unloaded only after the new one served


async def test_moving_an_alias_under_load_fails_no_request(served: Served) -> None:
    async with AsyncClient(served.target, timeout=30) as client:
        await served.ensure_versions(client, 2)
        assert (await client.set_model_alias(served.model_id, "production", 1)).aliases["production"] == 1
        await client.predict(served.model_id, ["warm"], alias="production")
        loop = asyncio.ensure_future(_load_loop(client, served, 2, alias="production"))
        await asyncio.sleep(0.2)
        assert (await client.set_model_alias(served.model_id, "production", 2)).aliases == {"production": 2}
        seen = await loop
    for versions in seen:
        assert versions == sorted(versions) and versions[-1] == 2


async def test_variants_are_served_only_when_they_passed_their_guard(served: Served) -> None:
    async with AsyncClient(served.target) as client:
        await served.ensure_versions(client, 2)
        write_int8_variant(served.version_dir(2), served=False, reason="macro F1 dropped 3.0 points, more than 1.0")
        int8 = await client.predict(served.model_id, TEXTS[:4], version=1, variant="int8")
        fp32 = await client.predict(served.model_id, TEXTS[:4], version=1)
        assert (int8.variant, fp32.variant, int8.model_version) == ("int8", "fp32", 1)
        for a, b in zip(scores(int8), scores(fp32), strict=True):
            assert max(abs(a[k] - b[k]) for k in a) < 0.05  # quantised, close but not equal
        with pytest.raises(FailedPrecondition, match=r"int8 variant is not served \(macro F1 dropped 3.0 points"):
            await client.predict(served.model_id, TEXTS[:1], version=2, variant="int8")
        with pytest.raises(InvalidArgument, match="variant 'fp16' is not one of"):
            await client.load_model(served.model_id, version=1, variant="fp16")
        versions = {v.version: v for v in (await client.get_model(served.model_id)).versions}
    assert list(versions[1].variants) == ["fp32", "int8"] and list(versions[2].variants) == ["fp32"]
    assert dict(versions[1].variant_macro_f1) == pytest.approx({"fp32": 0.9, "int8": 0.895})


async def test_least_recently_used_versions_are_unloaded_beyond_max_loaded_models(served: Served) -> None:
    async with AsyncClient(served.target) as client:
        await served.ensure_versions(client, 2)

        async def loaded() -> list[bool]:
            return [v.loaded for v in (await client.get_model(served.model_id)).versions][:2]

        model = await client.unload_model(served.model_id)
        assert not any(v.loaded for v in model.versions)
        await client.load_model(served.model_id, version=2)
        await client.predict(served.model_id, ["x"], version=1, variant="int8")
        assert await loaded() == [True, True]
        await client.predict(served.model_id, ["x"], version=1)  # a third session: version 2 is least recently used
        assert await loaded() == [True, False]
        model = await client.unload_model(served.model_id, version=1)
        assert [v.loaded for v in model.versions][:2] == [False, False]
        with pytest.raises(TuneServeError, match="model version '.*/99' not found"):
            await client.unload_model(served.model_id, version=99)


def test_cli_load_alias_predict_and_aliases_survive_a_restart(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", served.target, "--json"]
    assert cli([*base, "models", "load", served.model_id, "--version", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["versions"][0]["loaded"] is True
    assert cli([*base, "models", "alias", served.model_id, "canary", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["aliases"]["canary"] == 1
    assert cli([*base, "models", "alias", served.model_id, "Bad_Name", "1"]) == 2
    assert "INVALID_ARGUMENT: alias 'Bad_Name' is not valid" in capsys.readouterr().err
    served.server.restart()
    assert cli(["--target", served.target, "predict", "--model", served.model_id, "--alias", "canary",
                "--variant", "int8", "the match ended"]) == 0
    assert f"model {served.model_id} v1 (int8)" in capsys.readouterr().out
    assert cli([*base, "models", "unload", served.model_id]) == 0
    assert not any(v["loaded"] for v in json.loads(capsys.readouterr().out)["versions"])
