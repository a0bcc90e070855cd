"""SQLite metadata: datasets, jobs and their events, models and versions.

All statements run on one dedicated thread (one connection, WAL journal), so the asyncio event loop never blocks on
the database and writes are serialised without extra locking. Every public method is a coroutine.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tuneserve.types import (
    DatasetRecord,
    JobEventRecord,
    JobRecord,
    JobState,
    ModelRecord,
    ModelVersionRecord,
    Page,
    VersionState,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, format TEXT NOT NULL, modality TEXT NOT NULL, num_rows INTEGER NOT NULL,
    labels TEXT NOT NULL, label_counts TEXT NOT NULL, num_duplicates INTEGER NOT NULL, size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL, create_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, dataset_id TEXT NOT NULL, validation_dataset_id TEXT NOT NULL,
    backbone TEXT NOT NULL, hyperparameters TEXT NOT NULL, model_id TEXT NOT NULL, model_version INTEGER NOT NULL,
    progress TEXT NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
    create_time REAL NOT NULL, start_time REAL NOT NULL, end_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL, sequence INTEGER NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
    message TEXT NOT NULL, PRIMARY KEY (job_id, sequence)
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, modality TEXT NOT NULL, backbone TEXT NOT NULL, labels TEXT NOT NULL,
    create_time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model_id TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL, job_id TEXT NOT NULL,
    validation_metrics TEXT NOT NULL, onnx_size_bytes INTEGER NOT NULL, create_time REAL NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE TABLE IF NOT EXISTS model_aliases (
    model_id TEXT NOT NULL, alias TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (model_id, alias)
);
"""


class MetadataStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        def _open() -> None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            _add_columns(conn)
            self._conn = conn

        await self._run(_open)

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        await self._run(lambda: self._db.execute(sql, params))

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return await self._run(lambda: self._db.execute(sql, params).fetchall())

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("MetadataStore is not open")
        return self._conn

    # -- datasets -------------------------------------------------------------------------------------------------

    async def add_dataset(self, d: DatasetRecord) -> None:
        await self._execute(
            "INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (d.id, d.name, d.format, d.modality, d.num_rows, json.dumps(d.labels), json.dumps(d.label_counts),
             d.num_duplicates, d.size_bytes, d.sha256, d.create_time),
        )

    async def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        rows = await self._fetch("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        return _dataset(rows[0]) if rows else None

    async def list_datasets(self, page: Page) -> list[DatasetRecord]:
        rows = await self._fetch(
            "SELECT * FROM datasets ORDER BY create_time DESC, id LIMIT ? OFFSET ?", (page.size, page.offset)
        )
        return [_dataset(r) for r in rows]

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))

    # -- jobs -----------------------------------------------------------------------------------------------------

    async def add_job(self, j: JobRecord) -> None:
        await self._execute(
            "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (j.id, j.state.value, j.dataset_id, j.validation_dataset_id, j.backbone, json.dumps(j.hyperparameters),
             j.model_id, j.model_version, json.dumps(j.progress), json.dumps(j.result), j.error,
             j.create_time, j.start_time, j.end_time),
        )

    async def update_job(self, j: JobRecord) -> None:
        await self._execute(
            "UPDATE jobs SET state=?, progress=?, result=?, error=?, start_time=?, end_time=? WHERE id=?",
            (j.state.value, json.dumps(j.progress), json.dumps(j.result), j.error, j.start_time, j.end_time, j.id),
        )

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    async def list_jobs(self, page: Page, states: list[JobState] | None = None) -> list[JobRecord]:
        where, params = "", ()
        if states:
            where = f"WHERE state IN ({','.join('?' * len(states))})"
            params = tuple(s.value for s in states)
        rows = await self._fetch(
            f"SELECT * FROM jobs {where} ORDER BY create_time DESC, id LIMIT ? OFFSET ?",
            (*params, page.size, page.offset),
        )
        return [_job(r) for r in rows]

    async def count_jobs_by_state(self) -> dict[str, int]:
        rows = await self._fetch("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
        return {r["state"]: int(r["n"]) for r in rows}

    async def jobs_referencing_dataset(self, dataset_id: str) -> list[JobRecord]:
        rows = await self._fetch(
            "SELECT * FROM jobs WHERE (dataset_id = ? OR validation_dataset_id = ?) AND state IN (?, ?)",
            (dataset_id, dataset_id, JobState.QUEUED.value, JobState.RUNNING.value),
        )
        return [_job(r) for r in rows]

    async def add_job_event(self, e: JobEventRecord) -> None:
        await self._execute(
            "INSERT INTO job_events VALUES (?,?,?,?,?,?)",
            (e.job_id, e.sequence, e.time, e.kind, json.dumps(e.data), e.message),
        )

    async def job_events(self, job_id: str, after_sequence: int = 0) -> list[JobEventRecord]:
        rows = await self._fetch(
            "SELECT * FROM job_events WHERE job_id = ? AND sequence > ? ORDER BY sequence", (job_id, after_sequence)
        )
        return [
            JobEventRecord(r["job_id"], r["sequence"], r["time"], r["kind"], json.loads(r["data"]), r["message"])
            for r in rows
        ]

    async def last_job_event_sequence(self, job_id: str) -> int:
        rows = await self._fetch("SELECT MAX(sequence) AS s FROM job_events WHERE job_id = ?", (job_id,))
        return int(rows[0]["s"] or 0)

    # -- models ---------------------------------------------------------------------------------------------------

    async def add_model(self, m: ModelRecord) -> None:
        await self._execute(
            "INSERT INTO models (id, name, modality, backbone, labels, create_time, kind, source_job_id) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (m.id, m.name, m.modality, m.backbone, json.dumps(m.labels), m.create_time, m.kind, m.source_job_id),
        )

    async def put_model_version(self, v: ModelVersionRecord) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO model_versions VALUES (?,?,?,?,?,?,?)",
            (v.model_id, v.version, v.state.value, v.job_id, json.dumps(v.validation_metrics), v.onnx_size_bytes,
             v.create_time),
        )

    async def get_model(self, model_id: str) -> ModelRecord | None:
        rows = await self._fetch("SELECT * FROM models WHERE id = ?", (model_id,))
        if not rows:
            return None
        model = _model(rows[0])
        model.versions = await self._versions(model_id)
        model.aliases = await self._aliases(model_id)
        return model

    async def list_models(self, page: Page) -> list[ModelRecord]:
        rows = await self._fetch(
            "SELECT * FROM models ORDER BY create_time DESC, id LIMIT ? OFFSET ?", (page.size, page.offset)
        )
        models = [_model(r) for r in rows]
        for m in models:
            m.versions = await self._versions(m.id)
            m.aliases = await self._aliases(m.id)
        return models

    async def models_from_job(self, job_id: str) -> list[ModelRecord]:
        """The models a job created (its fine-tuned model and its baselines), oldest first."""
        rows = await self._fetch("SELECT id FROM models WHERE source_job_id = ? ORDER BY create_time, id", (job_id,))
        found = [await self.get_model(r["id"]) for r in rows]
        return [m for m in found if m is not None]

    async def delete_model(self, model_id: str) -> None:
        def _delete() -> None:
            with self._db:  # one transaction
                self._db.execute("BEGIN")
                self._db.execute("DELETE FROM model_versions WHERE model_id = ?", (model_id,))
                self._db.execute("DELETE FROM model_aliases WHERE model_id = ?", (model_id,))
                self._db.execute("DELETE FROM models WHERE id = ?", (model_id,))

        await self._run(_delete)

    async def set_model_alias(self, model_id: str, alias: str, version: int) -> None:
        await self._execute("INSERT OR REPLACE INTO model_aliases VALUES (?,?,?)", (model_id, alias, version))

    async def delete_model_alias(self, model_id: str, alias: str) -> None:
        await self._execute("DELETE FROM model_aliases WHERE model_id = ? AND alias = ?", (model_id, alias))

    async def _aliases(self, model_id: str) -> dict[str, int]:
        rows = await self._fetch("SELECT alias, version FROM model_aliases WHERE model_id = ? ORDER BY alias", (model_id,))
        return {r["alias"]: int(r["version"]) for r in rows}

    async def _versions(self, model_id: str) -> list[ModelVersionRecord]:
        rows = await self._fetch("SELECT * FROM model_versions WHERE model_id = ? ORDER BY version", (model_id,))
        return [
            ModelVersionRecord(r["model_id"], r["version"], VersionState(r["state"]), r["job_id"],
                               json.loads(r["validation_metrics"]), r["onnx_size_bytes"], r["create_time"])
            for r in rows
        ]


def _dataset(r: sqlite3.Row) -> DatasetRecord:
    return DatasetRecord(
        r["id"], r["name"], r["format"], r["modality"], r["num_rows"], json.loads(r["labels"]),
        json.loads(r["label_counts"]), r["num_duplicates"], r["size_bytes"], r["sha256"], r["create_time"],
    )


def _job(r: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=r["id"], state=JobState(r["state"]), dataset_id=r["dataset_id"],
        validation_dataset_id=r["validation_dataset_id"], backbone=r["backbone"],
        hyperparameters=json.loads(r["hyperparameters"]), model_id=r["model_id"], model_version=r["model_version"],
        progress=json.loads(r["progress"]), result=json.loads(r["result"]), error=r["error"],
        create_time=r["create_time"], start_time=r["start_time"], end_time=r["end_time"],
    )


def _model(r: sqlite3.Row) -> ModelRecord:
    return ModelRecord(
        r["id"], r["name"], r["modality"], r["backbone"], json.loads(r["labels"]), r["create_time"],
        kind=r["kind"], source_job_id=r["source_job_id"],
    )


# Columns added after the first release: ADD COLUMN with a default upgrades an existing database in place.
_ADDED_COLUMNS = {
    "models": [("kind", "TEXT NOT NULL DEFAULT 'finetuned'"), ("source_job_id", "TEXT NOT NULL DEFAULT ''")],
}


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns:
            if name not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
