"""`tuneserve serve` as a real child process (for faults and load: signals, crashes, restarts, its memory), plus a
few helpers to find and follow its training workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tuneserve_client import Client, TuneServeError

WORKER_MODULE = "tuneserve.engines.training.worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One `python -m tuneserve` process on a data directory; `start()` again after it ended reopens that directory
    on the same port. Its log is `<data_dir>/../server-N.log`."""

    def __init__(self, data_dir: Path, backbone_root: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.metrics_port = free_port()
        self.env = {
            "TUNESERVE_TRAINING__BACKBONE_DIRS": f'["{backbone_root}"]',
            "TUNESERVE_TRAINING__CANCEL_GRACE_SECONDS": "5",
            "TUNESERVE_INFERENCE__INTRA_OP_THREADS": "1",
            "TUNESERVE_SERVER__METRICS_HOST": "127.0.0.1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, **env: str) -> ServerProcess:
        self._starts += 1
        log = open(self.data_dir.parent / f"server-{self._starts}.log", "wb")  # noqa: SIM115 (the child owns it)
        command = [sys.executable, "-m", "tuneserve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--metrics-port", str(self.metrics_port), "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(command, env={**os.environ, **self.env, **env}, stdout=log, stderr=log)
        log.close()
        self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 180) -> None:
        """Until health says SERVING and the real client gets an answer. NOTE: the client's channels share gRPC's
        global subchannel pool, which after a refused connection (a restart) waits out its reconnect backoff."""
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel, Client(self.target, timeout=2) as client:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
                with contextlib.suppress(grpc.RpcError, TuneServeError):
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                        client.list_models(page_size=1)
                        return
                time.sleep(0.2)
        raise TimeoutError(f"server at {self.target} not SERVING after {timeout}s: {self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def workers(self) -> list[psutil.Process]:
        """The training worker processes this server started (and still runs)."""
        found = []
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if WORKER_MODULE in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
        return found

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir.parent / f"server-{self._starts}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll `predicate()` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
