"""A real Prometheus (Debian package `prometheus`) on a loopback port, for tests and benchmarks: it scrapes the given
targets every second, evaluates the given rule files, and answers PromQL through its HTTP API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

Vector = list[dict[str, Any]]


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    def __init__(self, workdir: Path, targets: Sequence[str], rule_files: Sequence[Path] = (),
                 job: str = "tuneserve-local", interval: str = "1s") -> None:
        binary = prometheus_binary()
        if binary is None:
            raise FileNotFoundError("prometheus not installed: apt-get install prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "prometheus.log").open("w")
        self._process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._workdir = workdir

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited {self._process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log_tail()}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH and return its `data` (raises on an error status)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> Vector:
        """Instant query; the result vector as [{metric: {labels}, value: [time, "value"]}, ...]."""
        data = self.api("query", query=expr)
        result: Vector = data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]
        return result

    def wait_for(self, expr: str, predicate: Callable[[Vector], bool] = bool, timeout: float = 20) -> Vector:
        """Poll `expr` until `predicate(result)` holds; returns that result."""
        deadline = time.monotonic() + timeout
        result: Vector = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if predicate(result):
                return result
            time.sleep(0.25)
        raise AssertionError(f"{expr!r} never satisfied the condition in {timeout}s; last result {result}")

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join((self._workdir / "prometheus.log").read_text().splitlines()[-lines:])

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._log.close()


def values(result: Vector) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs (without __name__): value} of an instant-query result."""
    return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
            for s in result}
