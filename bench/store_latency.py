"""Metadata store latency per operation, SQLite vs PostgreSQL, measured through the MetadataStore interface the server
uses (so PostgreSQL's figures include the pool, the network round trip on loopback and psycopg).

    .venv/bin/python -m bench.store_latency [--iterations 1000] [--postgres-url postgresql://...]

Without --postgres-url a throw-away PostgreSQL is started with the tests' helper (tests/postgres.py: initdb +
postgres on 127.0.0.1) with fsync on and synchronous_commit=off: the durability of the server's SQLite (WAL,
synchronous=NORMAL: the last commits may be lost on power loss, nothing is corrupted). The two backends are interleaved operation by operation
(the order alternating), so a load change on the machine hits both alike. Prints a Markdown table: median and p99 in
milliseconds per operation and backend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.postgres import running_postgres
from tests.store.records import dataset, job, model, progress
from tuneserve.settings import StorageSettings
from tuneserve.store import MetadataStore, metadata_store
from tuneserve.types import ModelVersionRecord, Page, VersionState

MODELS = 200
PAGE = 20
OPERATIONS = ["add dataset", "get model", f"list models (page of {PAGE})", "append job event", "claim job"]


async def populate(store: MetadataStore, iterations: int) -> None:
    now = time.time()
    for n in range(MODELS):
        await store.add_model(model(n, at=now))
        for version in (1, 2):
            await store.put_model_version(ModelVersionRecord(
                f"model-{n}", version, VersionState.READY, f"job-{n}-{version}", {"macro_f1": 0.9}, 90_000_000, now))
        await store.set_model_alias(f"model-{n}", "prod", 2)
    for n in range(iterations):
        await store.add_job(job(n, at=now))


def operations(store: MetadataStore, i: int) -> dict[str, Callable[[], Awaitable[object]]]:
    now = time.time()
    return {
        OPERATIONS[0]: lambda: store.add_dataset(dataset(i, at=now)),
        OPERATIONS[1]: lambda: store.get_model(f"model-{i % MODELS}"),
        OPERATIONS[2]: lambda: store.list_models(Page(PAGE, (i * PAGE) % MODELS)),
        OPERATIONS[3]: lambda: store.add_job_event(progress("job-events", i + 1, at=now)),
        OPERATIONS[4]: lambda: store.claim_job(f"job-{i}", now),
    }


async def measure(stores: dict[str, MetadataStore], iterations: int) -> dict[tuple[str, str], list[float]]:
    samples: dict[tuple[str, str], list[float]] = {(op, name): [] for op in OPERATIONS for name in stores}
    names = list(stores)
    for i in range(iterations):
        order = names if i % 2 == 0 else names[::-1]
        for op in OPERATIONS:
            for name in order:
                call = operations(stores[name], i)[op]
                start = time.perf_counter()
                await call()
                samples[(op, name)].append((time.perf_counter() - start) * 1000)
    return samples


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


async def run(iterations: int, postgres_url: str, workdir: Path) -> None:
    stores = {
        "SQLite": metadata_store(StorageSettings(database_url=f"sqlite:///{workdir}/bench.db")),
        "PostgreSQL": metadata_store(StorageSettings(database_url=postgres_url)),
    }
    for store in stores.values():
        await store.open()
        await populate(store, iterations)
    try:
        for i in range(50):  # warm-up: connections opened, statements prepared, pages cached
            for store in stores.values():
                await store.get_model(f"model-{i}")
        samples = await measure(stores, iterations)
    finally:
        for store in stores.values():
            await store.close()
    print(f"{iterations} interleaved iterations per operation; {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}\n")
    print("| operation | SQLite median | SQLite p99 | PostgreSQL median | PostgreSQL p99 |")
    print("|---|---:|---:|---:|---:|")
    for op in OPERATIONS:
        cells = []
        for name in stores:
            values = samples[(op, name)]
            cells += [f"{statistics.median(values):.3f}", f"{p99(values):.3f}"]
        print(f"| {op} | " + " | ".join(cells) + " |")
    print("\n(milliseconds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--postgres-url", help="an empty database to use instead of a throw-away local server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        url = args.postgres_url
        if not url:
            server = stack.enter_context(running_postgres(durable=True))
            if server is None:
                print("PostgreSQL is not installed: pass --postgres-url", file=sys.stderr)
                return 2
            url = server.create_database()
        asyncio.run(run(args.iterations, url, Path(workdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
