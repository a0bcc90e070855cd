"""Pick and open the metadata backend named by `storage.database_url`; a URL that cannot work is a `ConfigError`
that names the setting, raised before the server serves."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tuneserve.errors import ConfigError, DiskFull, Unavailable
from tuneserve.settings import StorageSettings
from tuneserve.store.metadata import MetadataStore
from tuneserve.store.postgres import PostgresMetadataStore
from tuneserve.store.sqlite import SQLiteMetadataStore

SETTING = "storage.database_url (TUNESERVE_STORAGE__DATABASE_URL)"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def metadata_store(storage: StorageSettings) -> MetadataStore:
    """The backend for the settings, not opened yet. Empty URL: SQLite at data_dir/tuneserve.db."""
    url = storage.database_url.strip()
    if not url:
        return SQLiteMetadataStore(storage.data_dir / "tuneserve.db")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return SQLiteMetadataStore(_sqlite_path(url))
    if scheme in POSTGRES_SCHEMES:
        _check_postgres_url(url)
        return PostgresMetadataStore(url, pool_size=storage.database_pool_size)
    shown = f"scheme {scheme!r}" if scheme else f"{_redact(url)!r} (no scheme://)"
    raise ConfigError(f"{SETTING}: unsupported {shown}; use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, "
                      "sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH, or leave it empty for data_dir/tuneserve.db")


async def open_metadata_store(storage: StorageSettings) -> MetadataStore:
    """`metadata_store()` opened: connected, schema created or upgraded. An unreachable database is a ConfigError
    at start-up (later outages are retried and reported through health instead)."""
    store = metadata_store(storage)
    try:
        await store.open()
    except Unavailable as exc:
        raise ConfigError(f"{SETTING}: {exc.message.removesuffix('; retry shortly')}") from None
    except DiskFull as exc:
        raise ConfigError(f"{SETTING}: cannot open {store.describe()}: {exc.message}") from None
    except psycopg.Error as exc:  # e.g. the user may not create tables
        raise ConfigError(f"{SETTING}: cannot set up the schema in {store.describe()}: {exc}") from None
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"{SETTING}: cannot open {store.describe()}: {getattr(exc, 'strerror', None) or exc}") from None
    return store


def _sqlite_path(url: str) -> Path:
    # NOTE: SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"{SETTING}: {url!r} has no file path; use sqlite:///RELATIVE/PATH or sqlite:////ABSOLUTE/PATH")
    return Path(rest[1:])


def _check_postgres_url(url: str) -> None:
    try:
        params = conninfo_to_dict(url)
        port = urlsplit(url).port  # NOTE: raises ValueError for a port that is not a number in 0..65535
    except (psycopg.ProgrammingError, ValueError) as exc:
        # NOTE: libpq quotes the whole URL, password included, after " in URI:"
        reason = str(exc).strip().splitlines()[0].split(" in URI:")[0]
        raise ConfigError(f"{SETTING}: cannot parse {_redact(url)!r}: {reason}") from None
    if port == 0 or "port" in params and not str(params["port"]).isdigit():
        raise ConfigError(f"{SETTING}: port {params.get('port')!r} in {_redact(url)!r} is not a valid port number")
    if not params.get("dbname"):
        raise ConfigError(f"{SETTING}: {_redact(url)!r} names no database; add /DATABASE after the host")


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail:
        return url
    credentials, _, host = tail.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in credentials else url
