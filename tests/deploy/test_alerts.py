"""deploy/prometheus/alerts.yml: valid rules (`promtool check rules`) that fire when they should
(`promtool test rules` runs deploy/prometheus/alerts_test.yml)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.promql import ALERTS, ALERTS_TEST, DEPLOY


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`)")
    return path


def test_rules_pass_promtool_check(promtool: str) -> None:
    run = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    run = subprocess.run([promtool, "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_alerts_cover_the_issue_and_are_documented() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"TuneserveHighErrorRate", "TuneservePredictLatencyHigh", "TuneserveInferenceQueueSaturated",
            "TuneserveFineTuneJobsFailing", "TuneserveTargetDown"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    tested = {case["alertname"] for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert len(tested & names) >= 2


def test_prometheus_config_loads_the_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert [DEPLOY / "prometheus" / name for name in config["rule_files"]] == [ALERTS]
