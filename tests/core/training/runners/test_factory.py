"""Choosing the runner: settings that cannot work together are refused, by build_runner and by `tuneserve serve`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_manifests import _tool
from tuneserve.settings import Settings


def _settings(tmp_path: Path, **training: Any) -> Settings:
    settings = Settings()
    settings.storage.data_dir = tmp_path / "data"
    for name, value in training.items():
        setattr(settings.training, name, value)
    return settings


def test_conflicting_runner_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneserve.core.training.runners.factory import build_runner
    from tuneserve.core.training.runners.local import LocalProcessRunner
    from tuneserve.errors import ConfigError

    assert isinstance(build_runner(_settings(tmp_path, processes_per_job=4)), LocalProcessRunner)
    with pytest.raises(ConfigError, match=r"nodes_per_job = 2 needs training.runner = kubernetes"):
        build_runner(_settings(tmp_path, nodes_per_job=2))
    with pytest.raises(ConfigError, match=r"needs kubernetes.image \(TUNESERVE_KUBERNETES__IMAGE\)"):
        build_runner(_settings(tmp_path, runner="kubernetes"))
    relative = _settings(tmp_path, runner="kubernetes")
    relative.kubernetes.image, relative.storage.data_dir = "tuneserve:0.1.0", Path("data")
    with pytest.raises(ConfigError, match="absolute storage.data_dir"):
        build_runner(relative)
    # Outside a cluster, with no kubeconfig (or without the client at all): one line that says which.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    ready = _settings(tmp_path, runner="kubernetes")
    ready.kubernetes.image = "tuneserve:0.1.0"
    with pytest.raises(ConfigError, match="no in-cluster ServiceAccount and no kubeconfig|pip install"):
        build_runner(ready)


def test_tuneserve_serve_refuses_them_with_one_line(tmp_path: Path) -> None:
    import subprocess

    env = {key: value for key, value in os.environ.items() if not key.startswith("TUNESERVE_")}
    env |= {"TUNESERVE_TRAINING__NODES_PER_JOB": "2", "TUNESERVE_STORAGE__DATA_DIR": str(tmp_path / "data"),
            "TUNESERVE_SERVER__PORT": "0", "TUNESERVE_SERVER__METRICS_PORT": "-1"}
    run = subprocess.run([_tool("tuneserve"), "serve"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nodes_per_job = 2 needs training.runner = kubernetes" in lines[0], run.stderr
