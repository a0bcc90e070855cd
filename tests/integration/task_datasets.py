"""Datasets of every task stored on a running server as core/data stores an upload (data.jsonl in the CONTRACT row
format + its DatasetRecord), for the training tests that must not wait for the upload parser of the new tasks."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import ServerThread
from tuneserve.core.ids import new_id
from tuneserve.store import ArtifactStore
from tuneserve.tasks import get_task
from tuneserve.types import DatasetRecord


def store_dataset(
    server: ServerThread, rows: list[dict[str, Any]], *, task: str, name: str = "rows", text_pairs: bool = False,
    modality: str = "text", images: Path | None = None,
) -> DatasetRecord:
    """Store `rows` (images: with the directory their "images/..." paths are relative to) as dataset of `task`."""
    assert server.app is not None
    artifacts = ArtifactStore(server.settings.storage.data_dir)
    dataset_id = new_id("ds")
    directory = artifacts.dataset_dir(dataset_id)
    if images is not None:
        shutil.copytree(images / "images", directory / "images")
    directory.mkdir(parents=True, exist_ok=True)
    content = "".join(json.dumps(row) + "\n" for row in rows)
    artifacts.dataset_rows(dataset_id).write_text(content)
    counts = Counter(label for row in rows for label in get_task(task).label_set(row[get_task(task).target_field]))
    record = DatasetRecord(
        id=dataset_id, name=name, format="jsonl", modality=modality, num_rows=len(rows), labels=sorted(counts),
        label_counts=dict(counts), num_duplicates=0, size_bytes=len(content), sha256=hashlib.sha256(content.encode())
        .hexdigest(), create_time=time.time(), task=task, text_pairs=text_pairs,
    )
    server._call(server.app.store.add_dataset(record))  # type: ignore[no-untyped-call]
    return record
