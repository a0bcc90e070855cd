"""A real Prometheus scrapes a real server every second during two fine-tunes and some predictions; the series come
back through Prometheus' HTTP API, the alerting rules evaluate cleanly and every dashboard query is valid PromQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread, make_settings
from tests.deploy.promql import ALERTS, dashboard, dashboard_exprs, substitute
from tests.integration.conftest import QUICK
from tests.integration.prometheus_server import PrometheusServer, prometheus_binary, values
from tuneserve_client import Client, JobState, NotFound

pytestmark = pytest.mark.skipif(
    prometheus_binary() is None, reason="prometheus not installed (apt-get install prometheus; .ci/run does)"
)
PREDICT = "/tuneserve.v1.PredictionService/Predict"
SCRAPE = 'job="tuneserve-local"'


@pytest.fixture
def two_job_server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    # NOTE: one torch thread per worker: two workers with a thread per CPU each take twice as long on 2 CPUs
    settings = make_settings(
        tmp_path / "data", tmp_path_factory.getbasetemp(), max_concurrent_jobs=2, worker_threads=1
    )
    thread = ServerThread(settings).start()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture
def prometheus(two_job_server: ServerThread, tmp_path: Path) -> Iterator[PrometheusServer]:
    assert two_job_server.app is not None
    prom = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{two_job_server.app.metrics_port}"], [ALERTS])
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.close()


@pytest.mark.timeout(60)  # ~25 s on 2 CPUs
def test_prometheus_scrapes_training_inference_and_cache_series(
    two_job_server: ServerThread, prometheus: PrometheusServer, tiny_bert: Path, train_file: Path
) -> None:
    prom = prometheus
    prom.wait_for(f"up{{{SCRAPE}}} == 1")
    with Client(two_job_server.target, timeout=60) as client:
        train = client.upload_dataset(train_file)
        # One job that runs until cancelled (evaluating every 4 steps) beside a short one that succeeds.
        endless = client.fine_tune(train.id, backbone=str(tiny_bert),
                                   hyperparameters={**QUICK, "max_steps": 100_000, "eval_steps": 4})
        quick = client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters=QUICK)
        done = client.wait_for_job(quick.id, timeout=40)
        assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error

        texts = ["the match ended with a late goal", "parliament votes on the new bill"]
        for _ in range(3):
            client.predict(done.model_id, texts)
        with pytest.raises(NotFound):
            client.predict("no-such-model", texts)

        # Training series of the running job: progress, losses, validation metrics, throughput.
        job = f'job_id="{endless.id}"'
        prom.wait_for(f"tuneserve_training_validation_metric{{{job}, metric=\"macro_f1\"}}", timeout=30)
        step = values(prom.query(f"tuneserve_training_step{{{job}}}"))
        assert list(step.values())[0] >= 1
        assert values(prom.query(f"tuneserve_training_max_steps{{{job}}}")) == {(("instance", _instance(prom)),
                                                                                 ("job", "tuneserve-local"),
                                                                                 ("job_id", endless.id)): 100_000}
        for name in ("train_loss", "validation_loss", "samples_per_second"):
            assert [v > 0 for v in values(prom.query(f"tuneserve_training_{name}{{{job}}}")).values()] == [True], name
        assert len(prom.query(f"tuneserve_training_learning_rate{{{job}}}")) == 1  # 0 during warm-up
        prom.wait_for('tuneserve_jobs{state="RUNNING"} == 1')
        client.cancel_job(endless.id)
        assert client.wait_for_job(endless.id, timeout=30).state == JobState.JOB_STATE_CANCELLED

    # A finished job's series go: the scrape stops carrying them and Prometheus marks them stale.
    prom.wait_for(f"tuneserve_training_step{{{job}}}", lambda r: not r)
    assert not prom.query(f'tuneserve_training_step{{job_id="{quick.id}"}}')
    states = values(prom.wait_for('tuneserve_jobs{state="CANCELLED"} == 1'))
    by_state = {dict(k)["state"]: v for k, v in values(prom.query("tuneserve_jobs")).items()}
    assert by_state == {"QUEUED": 0, "RUNNING": 0, "SUCCEEDED": 1, "FAILED": 0, "CANCELLED": 1}, states
    ended = values(prom.query("sum by (state) (tuneserve_job_duration_seconds_count)"))
    assert ended == {(("state", "SUCCEEDED"),): 1, (("state", "CANCELLED"),): 1}
    assert prom.query("max_over_time(tuneserve_jobs{state=\"RUNNING\"}[5m])")[0]["value"][1] == "2"

    # RPCs by method and code, predictions by model.
    rpcs = values(prom.query(f'sum by (method, code) (tuneserve_rpc_requests_total{{method="{PREDICT}"}})'))
    assert rpcs == {(("code", "NOT_FOUND"), ("method", PREDICT)): 1, (("code", "OK"), ("method", PREDICT)): 3}
    assert prom.query(f'tuneserve_rpc_duration_seconds_count{{method="{PREDICT}", code="OK"}}')[0]["value"][1] == "3"
    predicted = values(prom.query("sum by (model) (tuneserve_predictions_total)"))
    assert predicted == {(("model", done.model_id),): 6}

    # The batcher's view of those predictions: one queue wait per request, every text in some batch.
    model = f'model="{done.model_id}", version="1", provider="CPUExecutionProvider"'
    assert prom.query(f"tuneserve_inference_queue_seconds_count{{{model}}}")[0]["value"][1] == "3"
    assert prom.query(f"tuneserve_inference_batch_size_sum{{{model}}}")[0]["value"][1] == "6"
    assert float(prom.query(f"tuneserve_inference_compute_seconds_sum{{{model}}}")[0]["value"][1]) > 0

    # The model cache: one version loaded, its size, its load time.
    assert prom.query("tuneserve_models_loaded")[0]["value"][1] == "1"
    size = values(prom.query("tuneserve_model_size_bytes"))
    assert [dict(k)["model"] for k in size] == [done.model_id] and list(size.values())[0] > 10_000
    assert dict(next(iter(size)))["provider"] == "CPUExecutionProvider"
    assert prom.query('tuneserve_model_load_seconds_count{outcome="ok"}')[0]["value"][1] == "1"
    assert float(prom.query("process_resident_memory_bytes")[0]["value"][1]) > 50e6

    # The alerting rules load and evaluate without error against these series.
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert len(rules) >= 5 and all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    # Every dashboard query is valid PromQL to this Prometheus (the ones for this data return series). A scrape that
    # failed (a slow metrics endpoint under load) marks every series of the target stale until the next one succeeds:
    # query after a good scrape.
    prom.wait_for(f"up{{{SCRAPE}}} == 1")
    empty = []
    for title, expr in dashboard_exprs(dashboard()):
        if not prom.query(substitute(expr)):
            empty.append(title)
    assert not {"Jobs by state", "Texts predicted per second by model", "Batch size", "Queue time"} & set(empty)


def _instance(prom: PrometheusServer) -> str:
    return str(prom.query("up")[0]["metric"]["instance"])
