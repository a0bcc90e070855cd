"""Root fixtures: a real tuneserve server on a loopback port, running in a thread with its own event loop, so
tests can drive it through the real (sync or async) client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tuneserve.server import App
    from tuneserve.settings import Settings


class ServerThread:
    """Starts `create_server(settings)` on a private event loop; `restart()` reopens the same data directory."""

    def __init__(self, settings: Settings, runtime_opener: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.runtime_opener = runtime_opener  # None: the real engines.runtime.open_runtime
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tuneserve-test-server", daemon=True)
        self._thread.start()
        self.app: App | None = None

    @property
    def target(self) -> str:
        assert self.app is not None
        return f"127.0.0.1:{self.app.port}"

    def start(self) -> ServerThread:
        from tuneserve.server import create_server  # NOTE: lazily, so client-only installs can run tests/client

        if self.runtime_opener is None:
            self.app = self._call(create_server(self.settings))
        else:
            self.app = self._call(create_server(self.settings, runtime_opener=self.runtime_opener))
        self.settings.server.port = self.app.port  # a restart binds the same port
        return self

    def stop(self) -> None:
        if self.app is not None:
            self._call(self.app.stop(grace=1.0))
            self.app = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def call(self, coro):  # type: ignore[no-untyped-def]
        """Run `coro` on the server's event loop (e.g. on `app.store`) and return its result."""
        return self._call(coro)

    def _call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)


def make_settings(data_dir: Path, backbone_root: Path, **training: object) -> Settings:
    from tuneserve.settings import Settings

    settings = Settings()
    settings.server.host = "127.0.0.1"
    settings.server.port = 0
    settings.server.metrics_host = "127.0.0.1"
    settings.server.metrics_port = 0
    settings.storage.data_dir = data_dir
    settings.training.backbone_dirs = [backbone_root]
    settings.training.cancel_grace_seconds = 5.0
    settings.inference.intra_op_threads = 1
    for name, value in training.items():
        setattr(settings.training, name, value)
    return settings


@pytest.fixture
def server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    thread = ServerThread(make_settings(tmp_path / "data", tmp_path_factory.getbasetemp())).start()
    try:
        yield thread
    finally:
        thread.close()
