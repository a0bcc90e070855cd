"""A database written before models had a kind and a source job opens, upgrades in place and keeps its rows, on both
backends."""

from __future__ import annotations

import sqlite3
import time

import psycopg

from tuneserve.settings import StorageSettings
from tuneserve.store import metadata_store
from tuneserve.types import ModelRecord

OLD_MODELS = """CREATE TABLE models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, modality TEXT NOT NULL, backbone TEXT NOT NULL, labels TEXT NOT NULL,
    create_time REAL NOT NULL
)"""
OLD_ROW = "INSERT INTO models VALUES ('model-old', 'news', 'text', 'minilm-l6', '[\"a\", \"b\"]', 1.0)"


def write_old_database(url: str) -> None:
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(OLD_MODELS)
            conn.execute(OLD_ROW)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(OLD_MODELS)
            conn.execute(OLD_ROW)


async def test_old_database_gains_kind_and_source_job(database_url: str) -> None:
    write_old_database(database_url)
    store = metadata_store(StorageSettings(database_url=database_url))
    await store.open()
    try:
        old = await store.get_model("model-old")
        assert old is not None and (old.kind, old.source_job_id, old.labels) == ("finetuned", "", ["a", "b"])
        baseline = ModelRecord("model-new", "news (scratch baseline)", "text", "minilm-l6", ["a", "b"], time.time(),
                               kind="scratch", source_job_id="job-1")
        await store.add_model(baseline)
        assert [(m.id, m.kind) for m in await store.models_from_job("job-1")] == [("model-new", "scratch")]
    finally:
        await store.close()
    reopened = metadata_store(StorageSettings(database_url=database_url))  # finds the columns and adds nothing
    await reopened.open()
    try:
        assert (await reopened.get_model("model-new")).kind == "scratch"  # type: ignore[union-attr]
    finally:
        await reopened.close()
