"""Metadata: datasets, jobs and their events, models, versions and aliases.

`MetadataStore` is the one interface the core uses (every public method is a coroutine). It holds all the SQL, written
once in the subset SQLite and PostgreSQL agree on (`?` placeholders, `ON CONFLICT ... DO UPDATE`, `RETURNING`, JSON
kept as TEXT); a backend only runs statements: `SQLiteMetadataStore` (store/sqlite.py, the embedded default) and
`PostgresMetadataStore` (store/postgres.py, shared by several serving replicas). `open_metadata_store` picks one
from `storage.database_url`.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tuneserve.errors import DiskFull, Unavailable
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

Row = Mapping[str, Any]
# What a store write raises while the database cannot take writes for a while (its disk full, PostgreSQL unreachable):
# the core waits such an outage out, never failing the work it was recording for it.
STORE_OUTAGES = (Unavailable, DiskFull)
# How many numbers `add_model_version` tries before giving up: each lost try means another server's version of the
# same model was inserted in between, so this bounds a burst of that many concurrent FineTunes of one model.
ADD_VERSION_ATTEMPTS = 64
Statement = tuple[str, tuple[Any, ...]]

# `{float}` and `{int}` are the dialect's types: SQLite's REAL/INTEGER are 64-bit, PostgreSQL's are 32-bit (a REAL
# Unix time there would lose its seconds), so PostgreSQL gets DOUBLE PRECISION/BIGINT.
SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, format TEXT NOT NULL, modality TEXT NOT NULL, num_rows {int} NOT NULL,
    labels TEXT NOT NULL, label_counts TEXT NOT NULL, num_duplicates {int} NOT NULL, size_bytes {int} NOT NULL,
    sha256 TEXT NOT NULL, create_time {float} NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, dataset_id TEXT NOT NULL, validation_dataset_id TEXT NOT NULL,
    backbone TEXT NOT NULL, hyperparameters TEXT NOT NULL, model_id TEXT NOT NULL, model_version {int} NOT NULL,
    progress TEXT NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
    create_time {float} NOT NULL, start_time {float} NOT NULL, end_time {float} NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL, sequence {int} NOT NULL, time {float} NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
    message TEXT NOT NULL, PRIMARY KEY (job_id, sequence)
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, modality TEXT NOT NULL, backbone TEXT NOT NULL, labels TEXT NOT NULL,
    create_time {float} NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model_id TEXT NOT NULL, version {int} NOT NULL, state TEXT NOT NULL, job_id TEXT NOT NULL,
    validation_metrics TEXT NOT NULL, onnx_size_bytes {int} NOT NULL, create_time {float} NOT NULL,
    PRIMARY KEY (model_id, version)
);
CREATE TABLE IF NOT EXISTS model_aliases (
    model_id TEXT NOT NULL, alias TEXT NOT NULL, version {int} NOT NULL, PRIMARY KEY (model_id, alias)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
"""

# Columns added after the first release: ADD COLUMN with a default upgrades an existing database in place.
ADDED_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "models": [
        ("kind", "TEXT NOT NULL DEFAULT 'finetuned'"), ("source_job_id", "TEXT NOT NULL DEFAULT ''"),
        ("task", "TEXT NOT NULL DEFAULT 'classification'"), ("text_pairs", "INTEGER NOT NULL DEFAULT 0"),
    ],
    "datasets": [
        ("task", "TEXT NOT NULL DEFAULT 'classification'"), ("text_pairs", "INTEGER NOT NULL DEFAULT 0"),
        ("stats", "TEXT NOT NULL DEFAULT '{}'"),
    ],
    "jobs": [
        ("heartbeat_time", "DOUBLE PRECISION NOT NULL DEFAULT 0"),  # the running server's last "still running"
        ("cancel_requested", "INTEGER NOT NULL DEFAULT 0"),  # CancelJob arrived at another server
        ("restarts", "INTEGER NOT NULL DEFAULT 0"),  # times its worker was started again (training.max_restarts)
        ("task", "TEXT NOT NULL DEFAULT 'classification'"), ("text_pairs", "INTEGER NOT NULL DEFAULT 0"),
    ],
}


def schema_statements(float_type: str, int_type: str) -> list[str]:
    script = SCHEMA.format(float=float_type, int=int_type)
    return [s.strip() for s in script.split(";") if s.strip()]


_DATASET_COLUMNS = ("id, name, format, modality, num_rows, labels, label_counts, num_duplicates, size_bytes, sha256, "
                    "create_time, task, text_pairs, stats")
_JOB_COLUMNS = ("id, state, dataset_id, validation_dataset_id, backbone, hyperparameters, model_id, model_version, "
                "progress, result, error, create_time, start_time, end_time, task, text_pairs")
_VERSION_COLUMNS = "model_id, version, state, job_id, validation_metrics, onnx_size_bytes, create_time"


def _marks(columns: str) -> str:
    return ",".join("?" * len(columns.split(",")))


class MetadataStore(abc.ABC):
    """The metadata interface. Backends implement `open`, `close`, `describe` and the three statement runners."""

    shared = False
    """Whether several servers may use this database at once (then a RUNNING job may be another server's)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or upgrade the schema (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the metadata lives, for logs and messages (never a password)."""

    @abc.abstractmethod
    async def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Rows of a SELECT, or of a write with RETURNING."""

    @abc.abstractmethod
    async def _atomic(self, statements: Sequence[Statement]) -> None:
        """Run the statements in one transaction: all or none."""

    async def ping(self) -> None:
        """Raise (tuneserve.errors.Unavailable for a remote database) when the database does not answer."""
        await self._fetch("SELECT 1 AS ok")

    # -- datasets -------------------------------------------------------------------------------------------------

    async def add_dataset(self, d: DatasetRecord) -> None:
        await self._execute(
            f"INSERT INTO datasets ({_DATASET_COLUMNS}) VALUES ({_marks(_DATASET_COLUMNS)})",
            (d.id, d.name, d.format, d.modality, d.num_rows, json.dumps(d.labels), json.dumps(d.label_counts),
             d.num_duplicates, d.size_bytes, d.sha256, d.create_time, d.task, int(d.text_pairs), json.dumps(d.stats)),
        )

    async def get_dataset(self, dataset_id: str) -> DatasetRecord | None:
        rows = await self._fetch("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        return _dataset(rows[0]) if rows else None

    async def list_datasets(self, page: Page) -> list[DatasetRecord]:
        rows = await self._fetch(
            "SELECT * FROM datasets ORDER BY create_time DESC, id LIMIT ? OFFSET ?", (page.size, page.offset)
        )
        return [_dataset(r) for r in rows]

    async def dataset_ids(self) -> set[str]:
        return {r["id"] for r in await self._fetch("SELECT id FROM datasets")}

    async def delete_dataset(self, dataset_id: str) -> None:
        await self._execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))

    # -- jobs -----------------------------------------------------------------------------------------------------

    async def add_job(self, j: JobRecord) -> None:
        await self._execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({_marks(_JOB_COLUMNS)})",
            (j.id, j.state.value, j.dataset_id, j.validation_dataset_id, j.backbone, json.dumps(j.hyperparameters),
             j.model_id, j.model_version, json.dumps(j.progress), json.dumps(j.result), j.error,
             j.create_time, j.start_time, j.end_time, j.task, int(j.text_pairs)),
        )

    async def update_job(self, j: JobRecord) -> None:
        await self._execute(
            "UPDATE jobs SET state=?, progress=?, result=?, error=?, start_time=?, end_time=?, restarts=? WHERE id=?",
            (j.state.value, json.dumps(j.progress), json.dumps(j.result), j.error, j.start_time, j.end_time,
             j.restarts, j.id),
        )

    async def claim_job(self, job_id: str, start_time: float) -> JobRecord | None:
        """QUEUED -> RUNNING in one statement; None when the job is no longer QUEUED (cancelled, or claimed by
        another server on the same database). Of several servers claiming one job, exactly one gets it."""
        rows = await self._fetch(
            "UPDATE jobs SET state=?, start_time=?, heartbeat_time=? WHERE id=? AND state=? RETURNING *",
            (JobState.RUNNING.value, start_time, start_time, job_id, JobState.QUEUED.value),
        )
        return _job(rows[0]) if rows else None

    async def beat_jobs(self, job_ids: Sequence[str], now: float) -> list[str]:
        """The server running these jobs still does; returns those of them whose cancel was requested meanwhile."""
        if not job_ids:
            return []
        rows = await self._fetch(
            f"UPDATE jobs SET heartbeat_time=? WHERE id IN ({','.join('?' * len(job_ids))}) "
            "RETURNING id, cancel_requested",
            (now, *job_ids),
        )
        return sorted(r["id"] for r in rows if r["cancel_requested"])

    async def request_cancel(self, job_id: str) -> bool:
        """Ask the server running this job to cancel it (the next `beat_jobs` of that server returns it)."""
        rows = await self._fetch(
            "UPDATE jobs SET cancel_requested=1 WHERE id=? AND state=? RETURNING id", (job_id, JobState.RUNNING.value)
        )
        return bool(rows)

    async def orphaned_jobs(self, stale_before: float) -> list[JobRecord]:
        """RUNNING jobs no server runs any more: on a shared database those whose heartbeat is older than
        `stale_before`; on one server's own database, all of them (it is the only server, and it is starting)."""
        if not self.shared:
            return await self.list_jobs(Page(10**9, 0), [JobState.RUNNING])
        rows = await self._fetch(
            "SELECT * FROM jobs WHERE state = ? AND heartbeat_time < ? ORDER BY create_time, id",
            (JobState.RUNNING.value, stale_before),
        )
        return [_job(r) for r in rows]

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    async def list_jobs(self, page: Page, states: list[JobState] | None = None) -> list[JobRecord]:
        where = ""
        params: tuple[str, ...] = ()
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
            "INSERT INTO job_events (job_id, sequence, time, kind, data, message) VALUES (?,?,?,?,?,?)",
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

    async def model_versions(self) -> dict[str, set[str]]:
        """Every model's id and the numbers of its versions (as their directory names)."""
        found: dict[str, set[str]] = {r["id"]: set() for r in await self._fetch("SELECT id FROM models")}
        for r in await self._fetch("SELECT model_id, version FROM model_versions"):
            found.setdefault(r["model_id"], set()).add(str(r["version"]))
        return found

    async def add_model(self, m: ModelRecord) -> None:
        await self._execute(
            "INSERT INTO models (id, name, modality, backbone, labels, create_time, kind, source_job_id, task, "
            "text_pairs) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (m.id, m.name, m.modality, m.backbone, json.dumps(m.labels), m.create_time, m.kind, m.source_job_id,
             m.task, int(m.text_pairs)),
        )

    async def add_model_version(self, model_id: str, job_id: str, create_time: float) -> ModelVersionRecord:
        """A new TRAINING version numbered one past the model's highest (1 for the first), chosen and inserted in one
        statement. Servers adding versions of one model at once each get their own number: on SQLite the statement
        holds the write lock while it reads MAX; on PostgreSQL a concurrent insert of the same number makes this
        one insert nothing (ON CONFLICT DO NOTHING waits for the other to commit), and it tries the next number."""
        for _ in range(ADD_VERSION_ATTEMPTS):
            rows = await self._fetch(
                f"INSERT INTO model_versions ({_VERSION_COLUMNS}) "
                "SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, 0, ? FROM model_versions WHERE model_id = ? "
                "ON CONFLICT (model_id, version) DO NOTHING RETURNING version",
                (model_id, VersionState.TRAINING.value, job_id, "{}", create_time, model_id),
            )
            if rows:
                return ModelVersionRecord(model_id, int(rows[0]["version"]), VersionState.TRAINING, job_id,
                                          create_time=create_time)
        raise Unavailable(
            f"model {model_id!r}: {ADD_VERSION_ATTEMPTS} other versions were added while this one was numbered; "
            "retry shortly"
        )

    async def put_model_version(self, v: ModelVersionRecord) -> None:
        await self._execute(
            f"INSERT INTO model_versions ({_VERSION_COLUMNS}) VALUES ({_marks(_VERSION_COLUMNS)}) "
            "ON CONFLICT (model_id, version) DO UPDATE SET state=excluded.state, job_id=excluded.job_id, "
            "validation_metrics=excluded.validation_metrics, onnx_size_bytes=excluded.onnx_size_bytes, "
            "create_time=excluded.create_time",
            (v.model_id, v.version, v.state.value, v.job_id, json.dumps(v.validation_metrics), v.onnx_size_bytes,
             v.create_time),
        )

    async def get_model(self, model_id: str) -> ModelRecord | None:
        rows = await self._fetch("SELECT * FROM models WHERE id = ?", (model_id,))
        if not rows:
            return None
        return (await self._with_versions([_model(rows[0])]))[0]

    async def list_models(self, page: Page) -> list[ModelRecord]:
        rows = await self._fetch(
            "SELECT * FROM models ORDER BY create_time DESC, id LIMIT ? OFFSET ?", (page.size, page.offset)
        )
        return await self._with_versions([_model(r) for r in rows])

    async def models_from_job(self, job_id: str) -> list[ModelRecord]:
        """The models a job created (its fine-tuned model and its baselines), oldest first."""
        rows = await self._fetch(
            "SELECT * FROM models WHERE source_job_id = ? ORDER BY create_time, id", (job_id,)
        )
        return await self._with_versions([_model(r) for r in rows])

    async def delete_model(self, model_id: str) -> None:
        await self._atomic([
            ("DELETE FROM model_versions WHERE model_id = ?", (model_id,)),
            ("DELETE FROM model_aliases WHERE model_id = ?", (model_id,)),
            ("DELETE FROM models WHERE id = ?", (model_id,)),
        ])

    async def set_model_alias(self, model_id: str, alias: str, version: int) -> None:
        await self._execute(
            "INSERT INTO model_aliases (model_id, alias, version) VALUES (?,?,?) "
            "ON CONFLICT (model_id, alias) DO UPDATE SET version=excluded.version",
            (model_id, alias, version),
        )

    async def delete_model_alias(self, model_id: str, alias: str) -> None:
        await self._execute("DELETE FROM model_aliases WHERE model_id = ? AND alias = ?", (model_id, alias))

    async def _with_versions(self, models: list[ModelRecord]) -> list[ModelRecord]:
        """Fill in versions and aliases: two queries for the whole page, not two per model (a round trip each to a
        remote database)."""
        if not models:
            return models
        ids = tuple(m.id for m in models)
        marks = ",".join("?" * len(ids))
        versions = await self._fetch(
            f"SELECT * FROM model_versions WHERE model_id IN ({marks}) ORDER BY model_id, version", ids
        )
        aliases = await self._fetch(
            f"SELECT model_id, alias, version FROM model_aliases WHERE model_id IN ({marks}) ORDER BY model_id, alias",
            ids,
        )
        by_id = {m.id: m for m in models}
        for r in versions:
            by_id[r["model_id"]].versions.append(ModelVersionRecord(
                r["model_id"], r["version"], VersionState(r["state"]), r["job_id"],
                json.loads(r["validation_metrics"]), r["onnx_size_bytes"], r["create_time"],
            ))
        for r in aliases:
            by_id[r["model_id"]].aliases[r["alias"]] = int(r["version"])
        return models


def _dataset(r: Row) -> DatasetRecord:
    return DatasetRecord(
        r["id"], r["name"], r["format"], r["modality"], r["num_rows"], json.loads(r["labels"]),
        json.loads(r["label_counts"]), r["num_duplicates"], r["size_bytes"], r["sha256"], r["create_time"],
        task=r["task"], text_pairs=bool(r["text_pairs"]), stats=json.loads(r["stats"]),
    )


def _job(r: Row) -> JobRecord:
    return JobRecord(
        id=r["id"], state=JobState(r["state"]), dataset_id=r["dataset_id"],
        validation_dataset_id=r["validation_dataset_id"], backbone=r["backbone"],
        hyperparameters=json.loads(r["hyperparameters"]), model_id=r["model_id"], model_version=r["model_version"],
        progress=json.loads(r["progress"]), result=json.loads(r["result"]), error=r["error"],
        create_time=r["create_time"], start_time=r["start_time"], end_time=r["end_time"], restarts=r["restarts"],
        task=r["task"], text_pairs=bool(r["text_pairs"]),
    )


def _model(r: Row) -> ModelRecord:
    return ModelRecord(
        r["id"], r["name"], r["modality"], r["backbone"], json.loads(r["labels"]), r["create_time"],
        kind=r["kind"], source_job_id=r["source_job_id"], task=r["task"], text_pairs=bool(r["text_pairs"]),
    )
