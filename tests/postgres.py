"""A real, throw-away PostgreSQL server for tests and benchmarks: initdb into a temporary directory, `postgres` on
127.0.0.1 at a free port, one fresh database per test. PostgreSQL refuses to run as root, so under root it runs as
`nobody` (through setpriv, which execs: the process we hold is postgres itself, and stopping it is a signal away)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

# Where the binaries are: PATH (/usr/local/bin here), then the Debian package's versioned directory.
SEARCH = ["", "/usr/local/bin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
USER = "tuneserve"


def find_binaries() -> Path | None:
    """The directory holding initdb and postgres, or None."""
    for directory in SEARCH:
        found = shutil.which("initdb", path=directory or None)
        if found and shutil.which("postgres", path=str(Path(found).parent)):
            return Path(found).parent
    return None


class PostgresServer:
    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        # NOTE: tests run without fsync; a benchmark keeps it (and, like SQLite's WAL with synchronous=NORMAL, may
        # lose the last commits on power loss but never corrupt: synchronous_commit=off)
        self._speed = [] if durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]
        self.root = Path(tempfile.mkdtemp(prefix="tuneserve-pg-"))
        self.data_dir = self.root / "data"
        self.port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._as_nobody = os.geteuid() == 0
        if self._as_nobody:
            os.chown(self.root, 65534, 65534)
        self._run([str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", USER, "--auth=trust", "-E", "UTF8",
                   "--no-sync"], check=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the server process holds it
        self._proc = self._run(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.root), "-c", "synchronous_commit=off", *self._speed,
             "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.accepts():
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not start within 60s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown: clients are cut off, as when the database goes away under a running server."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            self._proc.wait(60)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def _run(self, argv: list[str], check: bool = False, **popen: object) -> subprocess.Popen[bytes]:
        if self._as_nobody:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        if check:
            subprocess.run(argv, check=True, capture_output=True, cwd=self.root, timeout=120)
            return None  # type: ignore[return-value]
        return subprocess.Popen(argv, cwd=self.root, **popen)  # type: ignore[call-overload]


@contextlib.contextmanager
def running_postgres(durable: bool = False) -> Iterator[PostgresServer | None]:
    """A started PostgresServer, closed afterwards; None when no binaries are installed."""
    bin_dir = find_binaries()
    if bin_dir is None:
        yield None
        return
    server = PostgresServer(bin_dir, durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
