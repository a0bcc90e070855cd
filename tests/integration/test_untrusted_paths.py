"""Path inputs cannot leave the allowed directories: a FineTune backbone that is a symlink or a `..` path out of an
allowed directory is refused, with the same answer whether the target exists or not and without saying where a link
points; names the filesystem cannot take are refused, not crashed on."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tuneserve_client import Client, InvalidArgument


@pytest.fixture
def outside(tiny_bert: Path) -> Iterator[Path]:
    """A real backbone directory outside every allowed directory (pytest's base temp is the allowed one)."""
    path = Path(tempfile.mkdtemp(prefix="tuneserve-outside-")) / "secret-backbone"
    shutil.copytree(tiny_bert, path)
    yield path
    shutil.rmtree(path.parent)


@pytest.fixture
def allowed(server: ServerThread) -> Path:
    return Path(tempfile.mkdtemp(dir=server.settings.training.backbone_dirs[0]))


def _refusal(client: Client, dataset_id: str, backbone: str) -> str:
    with pytest.raises(InvalidArgument) as caught:
        client.fine_tune(dataset_id, backbone=backbone)
    return caught.value.details


def test_symlink_and_dotdot_escapes_are_refused(
    client: Client, train_file: Path, allowed: Path, outside: Path
) -> None:
    dataset = client.upload_dataset(train_file)
    (allowed / "link").symlink_to(outside)
    escapes = [str(allowed / "link"), f"{allowed}/../../../../..{outside}", str(outside)]
    for backbone in escapes:
        message = _refusal(client, dataset.id, backbone)
        assert "outside the allowed backbone directories" in message
        assert str(outside) not in message.replace(backbone, "")  # never where a link points
    assert client.list_jobs().jobs == []


def test_existing_and_missing_paths_get_the_same_answer(client: Client, train_file: Path, outside: Path) -> None:
    dataset = client.upload_dataset(train_file)
    existing = _refusal(client, dataset.id, str(outside))
    missing = _refusal(client, dataset.id, str(outside) + "-missing")
    assert existing.replace(str(outside), "P") == missing.replace(str(outside) + "-missing", "P")


@pytest.mark.parametrize("backbone", ["a" * 256, "/" + "a" * 255, "x\x00y", "~no-such-user-x/model", "org/..", "./x/y"])
def test_names_the_filesystem_cannot_take_are_refused(client: Client, train_file: Path, backbone: str) -> None:
    dataset = client.upload_dataset(train_file)
    _refusal(client, dataset.id, backbone)
