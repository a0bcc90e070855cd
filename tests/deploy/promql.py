"""Reading deploy/'s monitoring assets: the PromQL of the Grafana dashboard's panels and of the alerting rules, and
the metric names an expression selects."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tuneserve-dashboard.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"

# Series Prometheus itself adds to every target.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"})
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                       "offset", "inf", "nan", "atan2"})
_VARIABLE_VALUES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' children included."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def dashboard_exprs(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query target."""
    return [(p["title"], t["expr"]) for p in panels(board) for t in p.get("targets", [])]


def alert_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


def variables(expr: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)", expr))


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """The expression Grafana would send: $__rate_interval and friends as durations, template variables as `.*`."""
    values = {**_VARIABLE_VALUES, **(values or {})}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), ".*"), expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (bare names and `__name__` matchers are all PromQL has)."""
    text = substitute(expr)
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', text))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Sample names a /metrics page can carry, from its `# TYPE` lines (families without samples count too)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",),
                "untyped": ("",), "unknown": ("",)}
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {base + suffix for suffix in suffixes[kind]}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names
