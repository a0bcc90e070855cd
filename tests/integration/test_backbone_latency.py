"""The measured CPU latency of the catalog backbones: the packaged figures (bench/backbone_latency.py) reach
BackboneInfo, ListBackbones and `tuneserve backbones`; a backbone never measured reports 0 and no conditions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tuneserve.engines import backbones
from tuneserve_client import Client
from tuneserve_client.cli.main import main


@pytest.fixture
def figures() -> Iterator[dict[str, dict[str, object]]]:
    backbones._latency_figures.cache_clear()
    yield json.loads(backbones.LATENCY_FILE.read_text())["backbones"]
    backbones._latency_figures.cache_clear()


def test_the_package_ships_a_figure_for_every_catalog_backbone(figures: dict[str, dict[str, object]]) -> None:
    catalog = {b.name: b for b in backbones.list_backbones()}
    assert set(figures) <= set(catalog) and "minilm-l6" in figures
    for name, info in catalog.items():
        entry = figures.get(name)
        if entry is None:
            assert (info.cpu_latency_ms, info.latency_measured_on) == (0.0, "")
            continue
        assert info.cpu_latency_ms == entry["p50_ms"] > 0
        for part in (f"batch {entry['batch']}", str(entry["input"]), f"{entry['threads']} thread(s)",
                     str(entry["machine"]), str(entry["date"]), str(entry["clock"])):  # fmt: skip
            assert part in info.latency_measured_on, part
    assert figures["minilm-l6"]["input"] == "128 tokens"


def test_a_backbone_never_measured_reports_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, figures: dict[str, dict[str, object]]
) -> None:
    only = tmp_path / "latency.json"
    only.write_text(json.dumps({"backbones": {"minilm-l6": figures["minilm-l6"]}}))
    monkeypatch.setattr(backbones, "LATENCY_FILE", only)
    for info in backbones.list_backbones():
        measured = info.name == "minilm-l6"
        assert (info.cpu_latency_ms > 0, bool(info.latency_measured_on)) == (measured, measured), info.name
    backbones._latency_figures.cache_clear()
    monkeypatch.setattr(backbones, "LATENCY_FILE", tmp_path / "missing.json")
    assert all(info.cpu_latency_ms == 0 for info in backbones.list_backbones())


def test_list_backbones_and_the_cli_show_the_figure(
    capsys: pytest.CaptureFixture[str], server: ServerThread, figures: dict[str, dict[str, object]]
) -> None:
    with Client(server.target, timeout=30) as client:
        listed = {b.name: b for b in client.list_backbones().backbones}
    minilm = listed["minilm-l6"]
    assert minilm.cpu_latency_ms == figures["minilm-l6"]["p50_ms"]
    assert "128 tokens" in minilm.latency_measured_on

    assert main(["--target", server.target, "backbones"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("minilm-l6"))
    assert f"{minilm.cpu_latency_ms:.1f}" in row.split() and "CPU MS" in out
