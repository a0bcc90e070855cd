"""ArtifactStore.publish_dir: a staged directory lands complete under its final name, nothing is left in the staging
area, and an existing artifact is never replaced; the same with syncfs(2) and with the per-file fsync fallback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tuneserve.errors import DiskFull
from tuneserve.store import ArtifactStore
from tuneserve.store import artifacts as artifacts_module


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def staged_images(artifacts: ArtifactStore, count: int = 300) -> Path:
    staged = artifacts.temp_dir()
    for n in range(count):
        folder = staged / "images" / str(n % 10)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:04d}.png").write_bytes(os.urandom(64 + n))
    (staged / "data.jsonl").write_text("".join(f'{{"image": "images/{n % 10}/{n:04d}.png"}}\n' for n in range(count)))
    return staged


@pytest.fixture(params=["syncfs", "fsync each file"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    if request.param == "syncfs":
        if artifacts_module._syncfs is None:
            pytest.skip("no syncfs(2) on this platform")
    else:
        monkeypatch.setattr(artifacts_module, "_syncfs", None)  # the path taken where libc has no syncfs
    return ArtifactStore(tmp_path / "data")


def test_published_directory_is_complete_and_the_staging_dir_is_gone(artifacts: ArtifactStore) -> None:
    staged = staged_images(artifacts)
    expected = tree(staged)
    final = artifacts.dataset_dir("ds-images")

    artifacts.publish_dir(staged, final)

    assert tree(final) == expected and len(expected) == 301
    assert not staged.exists()
    assert list((artifacts.root / "tmp").iterdir()) == []


def test_publishing_over_an_existing_artifact_fails_and_keeps_it(artifacts: ArtifactStore) -> None:
    final = artifacts.dataset_dir("ds-images")
    artifacts.publish_dir(staged_images(artifacts, 3), final)
    before = tree(final)
    again = staged_images(artifacts, 5)

    with pytest.raises(OSError):
        artifacts.publish_dir(again, final)

    assert tree(final) == before
    assert again.exists()  # the caller removes what it staged (DatasetManager.upload does)


def test_publishing_again_what_is_already_in_place_does_nothing(artifacts: ArtifactStore) -> None:
    """A job ended again after a crash between its publish and its record finds its version in place."""
    staged = staged_images(artifacts, 3)
    final = artifacts.version_dir("model-1", 1)
    artifacts.publish_dir(staged, final)
    before = tree(final)

    artifacts.publish_dir(staged, final)

    assert tree(final) == before


def test_no_space_left_is_disk_full_naming_the_volume(tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path / "data")
    message = rf"the data volume {artifacts.root} is full \(No space left on device\) while storing a dataset; free"
    with pytest.raises(DiskFull, match=message), artifacts.map_disk_full("storing a dataset"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "x")
    with pytest.raises(PermissionError), artifacts.map_disk_full("storing a dataset"):
        raise PermissionError(errno.EACCES, "denied")
