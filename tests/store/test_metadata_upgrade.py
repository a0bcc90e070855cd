"""A database written before models had a kind and a source job opens, upgrades in place and keeps its rows."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tuneserve.store import MetadataStore
from tuneserve.types import ModelRecord

OLD_MODELS = """CREATE TABLE models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, modality TEXT NOT NULL, backbone TEXT NOT NULL, labels TEXT NOT NULL,
    create_time REAL NOT NULL
)"""


async def test_old_database_gains_kind_and_source_job(tmp_path: Path) -> None:
    path = tmp_path / "tuneserve.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_MODELS)
        conn.execute("INSERT INTO models VALUES ('model-old', 'news', 'text', 'minilm-l6', '[\"a\", \"b\"]', 1.0)")
    store = MetadataStore(path)
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
    reopened = MetadataStore(path)  # a second open finds the columns and adds nothing
    await reopened.open()
    try:
        assert (await reopened.get_model("model-new")).kind == "scratch"  # type: ignore[union-attr]
    finally:
        await reopened.close()
