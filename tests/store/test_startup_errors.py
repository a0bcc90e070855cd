"""A configuration that cannot work stops `tuneserve serve` at start-up with one line on stderr that names the setting
to fix, exit status 2 and no traceback; the database URL is checked before anything is served."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tuneserve.errors import ConfigError
from tuneserve.settings import StorageSettings
from tuneserve.store import PostgresMetadataStore, SQLiteMetadataStore, metadata_store

SECRET = "s3cret-pa55"
SETTING = "storage.database_url (TUNESERVE_STORAGE__DATABASE_URL)"


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://app:" + SECRET + "@db/meta", "unsupported scheme 'mysql'"),
    ("db.internal:5432/meta", "no scheme://"),
    (f"postgresql://app:{SECRET}@[::1/meta", 'cannot parse \'postgresql://app:***@[::1/meta\': end of string reached'),
    (f"postgresql://app:{SECRET}@db:99999/meta", "Port out of range"),
    (f"postgresql://app:{SECRET}@db:port/meta", "Port could not be cast"),
    (f"postgresql://app:{SECRET}@db:5432", "names no database; add /DATABASE"),
    ("sqlite://", "has no file path"),
])
def test_bad_database_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        metadata_store(StorageSettings(database_url=url))
    text = str(caught.value)
    assert text.startswith(SETTING) and message in text and SECRET not in text and "\n" not in text


def test_database_urls_pick_the_backend(tmp_path: Path) -> None:
    default = metadata_store(StorageSettings(data_dir=tmp_path))
    assert isinstance(default, SQLiteMetadataStore) and default.describe() == f"sqlite:///{tmp_path}/tuneserve.db"
    absolute = metadata_store(StorageSettings(database_url=f"sqlite:///{tmp_path}/other.db"))
    assert absolute.describe() == f"sqlite:///{tmp_path}/other.db"
    relative = metadata_store(StorageSettings(database_url="sqlite:///meta/x.db"))
    assert relative.describe() == "sqlite:///meta/x.db"
    shared = metadata_store(StorageSettings(database_url=f"postgres://app:{SECRET}@db.internal:6432/meta"))
    assert isinstance(shared, PostgresMetadataStore)
    assert shared.describe() == "postgresql://app@db.internal:6432/meta"  # never the password


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_fails_at_start_in_one_line(tmp_path: Path) -> None:
    tuneserve = shutil.which("tuneserve", path=str(Path(sys.executable).parent)) or shutil.which("tuneserve")
    assert tuneserve, "the tuneserve command is not installed: pip install -e '.[server,dev]'"
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    cases = {
        "bad scheme": ({"TUNESERVE_STORAGE__DATABASE_URL": f"mysql://app:{SECRET}@db/meta"},
                       f"error: {SETTING}: unsupported scheme 'mysql'"),
        "unreachable": ({"TUNESERVE_STORAGE__DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:{_closed_port()}/m"},
                        f"error: {SETTING}: the metadata database postgresql://app@127.0.0.1:"),
        "bad pool size": ({"TUNESERVE_STORAGE__DATABASE_POOL_SIZE": "0"},
                          "error: invalid settings: TUNESERVE_STORAGE__DATABASE_POOL_SIZE:"),
        "cert without key": ({"TUNESERVE_SECURITY__TLS_CERT_FILE": str(tmp_path / "cert.pem")},
                             "error: security.tls_cert_file and tls_key_file go together"),
        "port in use": ({"TUNESERVE_SERVER__PORT": str(busy.getsockname()[1])},
                        "error: server.port (TUNESERVE_SERVER__PORT, --port): cannot bind 127.0.0.1:"),
        "data dir is a file": ({"TUNESERVE_STORAGE__DATA_DIR": str(tmp_path / "a-file" / "data")},
                               "error: storage.data_dir (TUNESERVE_STORAGE__DATA_DIR, --data-dir)"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("TUNESERVE_")}
    base.update(TUNESERVE_SERVER__HOST="127.0.0.1", TUNESERVE_SERVER__PORT="0", TUNESERVE_SERVER__METRICS_PORT="-1",
                TUNESERVE_STORAGE__DATA_DIR=str(tmp_path / "data"))
    procs = {  # all at once: each pays the server's import time
        name: subprocess.Popen([tuneserve, "serve"], env={**base, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, (env, _) in cases.items()
    }
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            expected = cases[name][1]
            assert (proc.returncode, out) == (2, ""), f"{name}: {proc.returncode} {err}"
            assert SECRET not in err and "Traceback" not in err
            if name == "port in use":  # NOTE: gRPC's C core logs its own line about the bind first
                err = err.splitlines(keepends=True)[-1]
            assert err.startswith(expected) and err.count("\n") == 1, f"{name}: {err}"
    finally:
        busy.close()
        for proc in procs.values():
            proc.kill()
