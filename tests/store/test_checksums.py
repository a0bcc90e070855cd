"""store.checksums: the manifest written at publish time catches a flipped byte, a truncated or a missing file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneserve.store import ArtifactStore
from tuneserve.store.checksums import MANIFEST, ChecksumMismatch, verify, write_manifest


def version(tmp_path: Path) -> Path:
    staged = tmp_path / "staged"
    (staged / "tokenizer").mkdir(parents=True)
    (staged / "model.onnx").write_bytes(bytes(range(256)) * 64)
    (staged / "labels.json").write_text('{"labels": ["a", "b"]}')
    (staged / "tokenizer" / "vocab.txt").write_text("[PAD]\nhello\n")
    return staged


def test_publishing_a_model_version_writes_a_manifest_that_verifies(tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "data")
    final = artifacts.version_dir("model-a", 1)
    artifacts.publish_dir(version(tmp_path), final)
    manifest = json.loads((final / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["labels.json", "model.onnx", "tokenizer/vocab.txt"]
    assert verify(final) == 3
    assert verify(final, lambda relative: relative.startswith("tokenizer/")) == 1


def test_datasets_get_no_manifest(tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "data")
    staged = tmp_path / "rows"
    staged.mkdir()
    (staged / "data.jsonl").write_text("{}\n")
    artifacts.publish_dir(staged, artifacts.dataset_dir("ds-a"))
    assert not (artifacts.dataset_dir("ds-a") / MANIFEST).exists()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: (d / "model.onnx").write_bytes(b"\xff" + (d / "model.onnx").read_bytes()[1:]), "differs"),
        (lambda d: (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes()[:-1]), "differs"),
        (lambda d: (d / "tokenizer" / "vocab.txt").unlink(), "missing"),
    ],
)
def test_a_damaged_file_is_named(tmp_path: Path, damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    directory = version(tmp_path)
    write_manifest(directory)
    damage(directory)
    with pytest.raises(ChecksumMismatch, match=problem) as error:
        verify(directory)
    assert error.value.relative in ("model.onnx", "tokenizer/vocab.txt")
    assert verify(directory, lambda relative: relative == "labels.json") == 1  # the intact file still checks


def test_without_a_manifest_nothing_is_checked_and_a_broken_one_is_reported(tmp_path: Path) -> None:
    directory = version(tmp_path)
    assert verify(directory) == 0
    (directory / MANIFEST).write_text("not json")
    with pytest.raises(ChecksumMismatch, match=f"{MANIFEST}: unreadable"):
        verify(directory)
