"""The artifact directory: datasets, model versions and job working directories under one root.

    <root>/datasets/<dataset_id>/data.jsonl          normalised rows {"text": ..., "label": ...}
    <root>/models/<model_id>/<version>/              model.onnx, labels.json, preprocessing.json, tokenizer/, ...,
                                                     checksums.json (sha256 of each file, see `store.checksums`)
    <root>/jobs/<job_id>/                            spec.json, worker.log, output/ (moved into models/ on success)

Writes are atomic: files are written to a temporary name in the same directory and renamed; whole directories are
built under a temporary name and renamed into place, so a reader never sees a half-written artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tuneserve.store import checksums


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        for sub in ("datasets", "models", "jobs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.root / "datasets" / dataset_id

    def dataset_rows(self, dataset_id: str) -> Path:
        return self.dataset_dir(dataset_id) / "data.jsonl"

    def model_dir(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def version_dir(self, model_id: str, version: int) -> Path:
        return self.model_dir(model_id) / str(version)

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def temp_dir(self) -> Path:
        """A fresh directory on the same filesystem as the artifacts, so that rename() into place is atomic."""
        return Path(tempfile.mkdtemp(dir=self.root / "tmp"))

    def publish_dir(self, staged: Path, final: Path) -> None:
        """Move a fully written directory into place atomically; fails if `final` already exists. A model version
        gets its checksums.json first, so that what is served can be checked against what was published."""
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_relative_to(self.root / "models"):
            checksums.write_manifest(staged)
        _fsync_tree(staged)
        os.rename(staged, final)

    def remove(self, path: Path) -> None:
        """Delete a directory by renaming it away first, so no reader sees it half deleted."""
        if not path.exists():
            return
        trash = self.temp_dir() / "trash"
        os.rename(path, trash)
        shutil.rmtree(trash.parent, ignore_errors=True)

    def clean_temp(self) -> None:
        """Drop leftovers of writes interrupted by a crash (called at start-up)."""
        for child in (self.root / "tmp").iterdir():
            shutil.rmtree(child, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
