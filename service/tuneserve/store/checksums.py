"""sha256 manifests of model version directories: written when a version is published, checked before it is served.

    <version_dir>/checksums.json    {"algorithm": "sha256", "files": {"model.onnx": "<hex>", "tokenizer/vocab.txt": ...}}

A version published before manifests existed has none and is served unchecked (nothing to compare against).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

MANIFEST = "checksums.json"
_CHUNK = 1024 * 1024


class ChecksumMismatch(Exception):
    """A file of a version directory is missing or differs from the digest recorded when it was published."""

    def __init__(self, directory: Path, relative: str, problem: str) -> None:
        super().__init__(f"{relative}: {problem}")
        self.directory = directory
        self.relative = relative
        self.problem = problem


def sha256_of(path: Path) -> str:
    # NOTE: read in chunks by hand: hashlib.file_digest is Python 3.11+, and the package supports 3.10
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path) -> Path:
    """Record the sha256 of every file under `directory` (written to a temporary name, then renamed)."""
    files = {
        path.relative_to(directory).as_posix(): sha256_of(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    target = directory / MANIFEST
    staged = directory / f".{MANIFEST}.tmp"
    staged.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1) + "\n")
    os.replace(staged, target)
    return target


def verify(directory: Path, wanted: Callable[[str], bool] = lambda relative: True) -> int:
    """Compare the manifest's files that `wanted` selects with the disk; returns how many were checked (0 without a
    manifest). Raises ChecksumMismatch naming the first file that is missing or differs."""
    path = directory / MANIFEST
    if not path.exists():
        return 0
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("algorithm") != "sha256" or not isinstance(files, dict):
            raise ValueError("not a sha256 manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChecksumMismatch(directory, MANIFEST, f"unreadable ({exc})") from exc
    checked = 0
    for relative, expected in sorted(files.items()):
        if not wanted(relative):
            continue
        try:
            actual = sha256_of(directory / relative)
        except FileNotFoundError:
            raise ChecksumMismatch(directory, relative, "missing") from None
        if actual != expected:
            problem = f"sha256 {actual[:12]}... differs from the published {expected[:12]}..."
            raise ChecksumMismatch(directory, relative, problem)
        checked += 1
    return checked
