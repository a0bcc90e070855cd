"""deploy/grafana/tuneserve-dashboard.json: a well-formed Grafana dashboard whose every query (and every alerting
rule) selects metrics a live tuneserve server really exposes."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conftest import ServerThread
from tests.deploy.promql import (
    SYNTHETIC,
    alert_exprs,
    dashboard,
    dashboard_exprs,
    exposed_names,
    metric_names,
    panels,
    variables,
)
from tuneserve.collectors import NvmlCollector


@pytest.fixture
def exposed(server: ServerThread) -> set[str]:
    assert server.app is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{server.app.metrics_port}/metrics", timeout=10) as response:
        names = exposed_names(response.read().decode())
    gpu = set(NvmlCollector.METRICS)
    if NvmlCollector().available:
        assert gpu <= names, "a GPU is present but its metrics are not exposed"
    return names | gpu | SYNTHETIC  # GPU series exist only where NVML finds a GPU


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    defined = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in defined
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            used = {v for v in variables(target["expr"]) if not v.startswith("__")}
            assert used <= defined, f"{panel['title']!r} uses undefined variables {used - defined}"
    # no two panels overlap
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        g = panel["gridPos"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & cell, f"panel {panel['title']!r} overlaps another"
        cells |= cell


def test_dashboard_covers_the_issue() -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard()))
    for topic in ("rpc rate", "error", "p50 / p99", "predict latency", "batch size", "queue time", "jobs by state",
                  "loss", "cache memory", "gpu"):
        assert topic in titles, topic


def test_every_dashboard_query_selects_exposed_metrics(exposed: set[str]) -> None:
    for title, expr in dashboard_exprs(dashboard()):
        names = metric_names(expr)
        assert names, f"{title!r}: no metric in {expr!r}"
        assert names <= exposed, f"{title!r} queries {sorted(names - exposed)}, which the server does not expose"


def test_every_alert_selects_exposed_metrics(exposed: set[str]) -> None:
    for alert, expr in alert_exprs():
        assert metric_names(expr) <= exposed, f"{alert} queries {sorted(metric_names(expr) - exposed)}"


def test_metric_name_parser() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, method) (rate(tuneserve_rpc_duration_seconds_bucket'
            '{job=~"$job", method=~".*/Predict"}[$__rate_interval]))) / ignoring(code) up offset 5m')
    assert metric_names(expr) == {"tuneserve_rpc_duration_seconds_bucket", "up"}
    assert metric_names('sum(rate(tuneserve_rpc_requestz_total{code="OK"}[5m])) > bool 0') == {
        "tuneserve_rpc_requestz_total"
    }
    assert metric_names('{__name__="tuneserve_jobs", state="FAILED"}') == {"tuneserve_jobs"}
