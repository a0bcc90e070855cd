"""The artifact directory: datasets, model versions and job working directories under one root.

    <root>/datasets/<dataset_id>/data.jsonl          normalised rows {"text": ..., "label": ...}
    <root>/models/<model_id>/<version>/              model.onnx, labels.json, preprocessing.json, tokenizer/, ...,
                                                     checksums.json (sha256 of each file, see `store.checksums`)
    <root>/jobs/<job_id>/                            spec.json, worker.log, output/ (moved into models/ on success)

Writes are atomic: files are written to a temporary name in the same directory and renamed; whole directories are
built under a temporary name and renamed into place, so a reader never sees a half-written artifact. They are durable
too: what `publish_dir` moves into place is on disk before the rename, and the rename is on disk when it returns.
A directory is published before its metadata record is written: a crash in between leaves a directory no record
names, which `store.sweep` removes at the next start (a model version's job completes it instead).

A write that finds the volume full raises `DiskFull` naming the volume (`map_disk_full`), never a bare OSError.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from tuneserve.errors import DiskFull
from tuneserve.store import checksums

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # no space left; disk quota exceeded


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

    @contextlib.contextmanager
    def map_disk_full(self, doing: str) -> Iterator[None]:
        """Turn "no space left on device" (or "disk quota exceeded") inside the block into DiskFull naming the data
        volume and what was being written; other OSErrors pass through."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            raise DiskFull(
                f"the data volume {self.root} is full ({exc.strerror}) while {doing}; free space on it and retry"
            ) from exc

    def publish_dir(self, staged: Path, final: Path) -> None:
        """Move a fully written directory into place atomically; fails if `final` already exists. A model version
        gets its checksums.json first, so that what is served can be checked against what was published.

        Idempotent: once `staged` has been moved into place, publishing it again does nothing (a job finishing again
        after a crash between its publish and its record)."""
        if not staged.exists() and final.exists():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_relative_to(self.root / "models"):
            checksums.write_manifest(staged)
        _sync_tree(staged)
        os.rename(staged, final)
        _fsync(final.parent)  # the rename itself (and so the metadata record written next) survives a power cut

    def remove(self, path: Path) -> None:
        """Delete a directory by renaming it away first, so no reader sees it half deleted."""
        if not path.exists():
            return
        try:
            trash = self.temp_dir() / "trash"
        except OSError:  # NOTE: no room for even a directory: deleting is what frees space, so delete in place
            shutil.rmtree(path, ignore_errors=True)
            return
        os.rename(path, trash)
        shutil.rmtree(trash.parent, ignore_errors=True)

    def clean_temp(self) -> None:
        """Drop leftovers of writes interrupted by a crash (called at start-up)."""
        for child in (self.root / "tmp").iterdir():
            shutil.rmtree(child, ignore_errors=True)


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2) (Linux only): flush one filesystem's dirty data and metadata, waiting until it is written."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs


_syncfs = _load_syncfs()


def _sync_tree(path: Path) -> None:
    """Put every file and directory under `path` on disk."""
    # NOTE: one syncfs instead of an fsync per file: a 1,797-image dataset took ~10 s in fsyncs (each one waits for
    # its own journal commit) and takes well under a second this way. It also flushes whatever else is pending on
    # that filesystem, which a publish may have to wait for; elsewhere (no syncfs) every file and directory is fsynced.
    if _syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs(fd) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"syncfs: {os.strerror(errno)}", str(path))
        finally:
            os.close(fd)
        return
    for f in sorted(path.rglob("*"), reverse=True):  # files before the directories that hold them
        _fsync(f)
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
