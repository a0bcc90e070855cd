"""Image datasets through the real client on a real server: a zip of class folders and JSONL with base64 images are
stored as images, and every bad upload is INVALID_ARGUMENT naming the entry or line, with nothing half-stored."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ServerThread, make_settings
from tests.fixtures import IMAGE_LABELS, make_image, write_text_dataset
from tuneserve_client import Client, DatasetFormat, InvalidArgument, Modality, ResourceExhausted
from tuneserve_client.cli.main import main

COUNTS = {label: 4 for label in IMAGE_LABELS}
MAX_PIXELS = 100 * 100


def zip_bytes(entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "../../etc/passwd")
    return out.getvalue()


def class_folders(counts: dict[str, int] = COUNTS, *, top: str = "") -> dict[str, bytes]:
    prefix = f"{top}/" if top else ""
    return {
        f"{prefix}{label}/{i:03d}.png": make_image(label, seed=i) for label, count in counts.items() for i in range(count)
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("image-upload")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    settings.limits.max_image_pixels = MAX_PIXELS
    settings.limits.max_dataset_rows = 40
    settings.limits.max_dataset_bytes = 256 * 1024
    thread = ServerThread(settings).start()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[Client]:
    with Client(server.target, timeout=60) as c:
        yield c


def stored_dirs(server: ServerThread) -> set[str]:
    """Every directory under the data directory's datasets/ (published) and its temp area (staged)."""
    root = server.settings.storage.data_dir
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir() and "models" not in p.parts}


def test_zip_of_class_folders(client: Client, server: ServerThread) -> None:
    entries = class_folders(top="pets")
    entries["pets/red_square/copy.png"] = entries["pets/red_square/000.png"]
    dataset = client.upload_dataset_bytes(zip_bytes(entries), name="pets.zip")
    assert dataset.modality == Modality.MODALITY_IMAGE
    assert dataset.format == DatasetFormat.DATASET_FORMAT_ZIP
    assert dataset.num_rows == 13
    assert dict(dataset.label_counts) == {"blue_bar": 4, "green_circle": 4, "red_square": 5}
    assert dataset.num_duplicates == 1
    directory = server.settings.storage.data_dir / "datasets" / dataset.id
    rows = [json.loads(line) for line in (directory / "data.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"image", "label"}
    stored = {(directory / row["image"]).read_bytes() for row in rows}
    assert stored == set(entries.values())              # original bytes, nothing re-encoded
    assert client.get_dataset(dataset.id).modality == Modality.MODALITY_IMAGE


def test_jsonl_with_base64_images(client: Client, tmp_path: Path) -> None:
    lines = [
        json.dumps({"picture": base64.b64encode(make_image(label, seed=i, fmt="JPEG")).decode(), "class": label})
        for label in IMAGE_LABELS for i in range(2)
    ]
    path = tmp_path / "images.jsonl"
    path.write_text("\n".join(lines) + "\n")
    dataset = client.upload_dataset(path, image_column="picture", label_column="class")
    assert dataset.modality == Modality.MODALITY_IMAGE
    assert dataset.format == DatasetFormat.DATASET_FORMAT_JSONL
    assert dataset.num_rows == 6 and dataset.num_duplicates == 0


def _big_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (101, 100), (1, 2, 3)).save(out, format="PNG")
    return out.getvalue()


def _many() -> dict[str, bytes]:
    one = make_image("red_square")
    return {f"{'red' if i % 2 else 'blue'}/{i}.png": one for i in range(41)}


GOOD = class_folders({"red_square": 1, "blue_bar": 1})
BAD_ZIPS = [
    ({**GOOD, "green/1.png": make_image("green_circle", fmt="JPEG")[:-80]}, "'green/1.png': corrupt or truncated"),
    ({**GOOD, "green/1.png": make_image("green_circle")[:30]}, "'green/1.png': not a supported image"),
    ({**GOOD, "green/1.gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"}, "'green/1.gif': not a supported image"),
    ({**GOOD, "green/1.tif": b"II*\x00" + b"\x00" * 60}, "'green/1.tif': not a supported image"),
    ({**GOOD, "../green/1.png": make_image("green_circle")}, "'../green/1.png' points outside the archive root"),
    ({**GOOD, "/tmp/green/1.png": make_image("green_circle")}, "'/tmp/green/1.png' points outside the archive root"),
    ({**GOOD, "green/1.png": _big_png()}, "'green/1.png': image is 101x100 = 10100 pixels, more than 10000"),
    ({**GOOD, "loose.png": make_image("green_circle")}, "'loose.png' is not in a class folder"),
    ({**GOOD, "green/deep/1.png": make_image("green_circle")}, "'green/deep/1.png' is nested below a class folder"),
    ({**GOOD, "green/1.bmp": b"\0" * (300 * 1024)}, "uncompressed .limit max_dataset_bytes"),
    (_many(), "more than 40 files .limit max_dataset_rows"),
]


@pytest.mark.parametrize(("entries", "message"), BAD_ZIPS)
def test_bad_zips_are_refused_naming_the_entry(
    client: Client, server: ServerThread, entries: dict[str, bytes], message: str
) -> None:
    before, datasets = stored_dirs(server), len(client.list_datasets().datasets)
    with pytest.raises(InvalidArgument, match=message):
        client.upload_dataset_bytes(zip_bytes(entries), name="bad.zip")
    assert stored_dirs(server) == before                  # nothing half-stored, no staged leftovers
    assert len(client.list_datasets().datasets) == datasets


def test_symlink_entries_and_bad_archives(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="'blue_bar/link.png' is a symbolic link"):
        client.upload_dataset_bytes(zip_bytes(GOOD, symlinks=("blue_bar/link.png",)), name="bad.zip")
    with pytest.raises(InvalidArgument, match="not a readable zip archive"):
        client.upload_dataset_bytes(b"PK\x03\x04 truncated", name="bad.zip")
    with pytest.raises(InvalidArgument, match="image_column is for JSONL"):
        client.upload_dataset_bytes(b"text,label\na,b\n", name="a.csv", image_column="image")
    with pytest.raises(InvalidArgument, match="line 2: field 'image' is not valid base64"):
        good = base64.b64encode(make_image("blue_bar")).decode()
        content = json.dumps({"image": good, "label": "a"}) + "\n" + json.dumps({"image": "%%%", "label": "b"})
        client.upload_dataset_bytes(content.encode(), name="a.jsonl", image_column="image")


def test_the_upload_itself_is_bounded(client: Client) -> None:
    with pytest.raises(ResourceExhausted, match="max_dataset_bytes"):
        client.upload_dataset_bytes(os.urandom(300 * 1024), name="big.zip")


def test_cli_uploads_a_zip_and_image_jsonl(
    client: Client, server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "shapes.zip"
    archive.write_bytes(zip_bytes(class_folders({"red_square": 2, "blue_bar": 2})))
    assert main(["--target", server.target, "--json", "datasets", "upload", str(archive)]) == 0
    uploaded = json.loads(capsys.readouterr().out)
    assert [uploaded[k] for k in ("modality", "format", "num_rows")] == ["MODALITY_IMAGE", "DATASET_FORMAT_ZIP", "4"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(
        json.dumps({"img": base64.b64encode(make_image(label)).decode(), "label": label}) + "\n"
        for label in ("red_square", "blue_bar")
    ))
    assert main(["--target", server.target, "datasets", "upload", str(rows), "--image-column", "img"]) == 0
    assert main(["--target", server.target, "datasets", "upload", str(rows)]) == 2     # read as text: no 'text'
    assert "missing field 'text'" in capsys.readouterr().err


def test_fine_tune_refuses_a_validation_dataset_of_the_other_modality(
    client: Client, tiny_efficientnet: Path, tmp_path: Path
) -> None:
    train = client.upload_dataset_bytes(zip_bytes(class_folders()), name="train.zip")
    text = client.upload_dataset(write_text_dataset(tmp_path / "val.jsonl", COUNTS, seed=4))
    with pytest.raises(InvalidArgument, match=f"dataset '{text.id}' .* holds text rows but backbone .* image inputs"):
        client.fine_tune(train.id, validation_dataset_id=text.id, backbone=str(tiny_efficientnet))
    assert client.list_jobs().jobs == []
