"""The start-up sweep of the artifact directory: dataset and model directories that no metadata record names.

A directory is published (renamed into place) before its record is written, and a deleted one loses its record before
its files (`store.artifacts`): a crash in between leaves files nothing lists, serves or deletes. A model version that
is still TRAINING has a record, so it is not swept: its job completes it (`core.training.jobs`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tuneserve.store.artifacts import ArtifactStore
from tuneserve.store.metadata import MetadataStore

log = logging.getLogger(__name__)


async def sweep_orphans(store: MetadataStore, artifacts: ArtifactStore, *, min_age_seconds: float) -> list[Path]:
    """Remove the orphan directories at least `min_age_seconds` old (by their last change), log each, return them.
    On a database shared with other servers, keep `min_age_seconds` above the time between a publish and its record:
    a younger orphan may be another server's, about to be recorded."""
    datasets = await store.dataset_ids()
    versions = await store.model_versions()
    # NOTE: the directories are listed after the records are read: one published in between is young, not swept
    orphans = [(d, "dataset") for d in _subdirs(artifacts.root / "datasets") if d.name not in datasets]
    for model in _subdirs(artifacts.root / "models"):
        if model.name not in versions:
            orphans.append((model, "model"))
            continue
        orphans.extend((v, "model version") for v in _subdirs(model) if v.name not in versions[model.name])
    removed = []
    for path, kind in orphans:
        if time.time() - path.lstat().st_mtime < min_age_seconds:
            continue
        artifacts.remove(path)
        log.warning("removed %s: a %s directory no metadata record names (left by a crash)", path, kind)
        removed.append(path)
    return removed


def _subdirs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.is_symlink())
