"""Image dataset parsing: a zip of class folders and JSONL with base64 images, stored as `images/NNNNNN.<ext>`."""

from __future__ import annotations

import base64
import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tuneserve.core.data.image_parsing import parse_image_jsonl, parse_zip
from tuneserve.core.data.parsing import ParseLimits
from tuneserve.core.data.targets import Columns
from tuneserve.errors import InvalidArgument

LIMITS = ParseLimits(max_rows=20, max_labels=4, max_text_chars=100, max_label_chars=16, max_image_pixels=64 * 64,
                     max_bytes=1 << 20)


def image(color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG", size: tuple[int, int] = (8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


def stored_rows(out: Path) -> list[tuple[str, str]]:
    """(image path, label) of each row the parser wrote to out/data.jsonl."""
    lines = (out / "data.jsonl").read_text("utf-8").split("\n")[:-1]
    return [(row["image"], row["label"]) for row in map(json.loads, lines)]


def make_zip(path: Path, entries: dict[str, bytes], *, symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def test_zip_of_class_folders_stores_original_bytes(tmp_path: Path) -> None:
    red, green, jpeg = image((200, 0, 0)), image((0, 200, 0)), image((0, 0, 200), "JPEG")
    archive = make_zip(tmp_path / "a.zip", {
        "cat/1.png": red, "cat/2.png": red, "dog/1.jpg": jpeg, "dog/2.png": green, "dog/": b"",
        "__MACOSX/dog/._1.jpg": b"junk", "cat/.DS_Store": b"junk",
    })
    out = tmp_path / "out"
    parsed = parse_zip(archive, out, LIMITS)
    assert parsed.label_counts == {"cat": 2, "dog": 2}
    assert parsed.num_duplicates == 1                      # cat/2.png repeats cat/1.png byte for byte
    rows = stored_rows(out)
    assert parsed.num_rows == 4 and parsed.modality == "image"
    assert [label for _, label in rows] == ["cat", "cat", "dog", "dog"]
    assert [Path(p).suffix for p, _ in rows] == [".png", ".png", ".jpg", ".png"]
    assert (out / rows[2][0]).read_bytes() == jpeg
    assert all(p.startswith("images/") for p, _ in rows)


def test_zip_under_one_top_folder(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"pets/cat/1.png": image(), "pets/dog/1.bmp": image(fmt="BMP")})
    parsed = parse_zip(archive, tmp_path / "out", LIMITS)
    assert parsed.label_counts == {"cat": 1, "dog": 1}
    assert stored_rows(tmp_path / "out")[1][0].endswith(".bmp")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"cat/1.png": image(), "loose.png": image()}, "zip entry 'loose.png' is not in a class folder"),
        ({"cat/1.png": image(), "dog/x/1.png": image(), "a/b/c/d.png": image()}, "is nested below a class folder"),
        ({"cat/1.png": image(), "../dog/1.png": image()}, "'../dog/1.png' points outside the archive root"),
        ({"cat/1.png": image(), "/abs/dog/1.png": image()}, "'/abs/dog/1.png' points outside the archive root"),
        ({"cat/1.png": image(), "C:/dog/1.png": image()}, "points outside the archive root"),
        ({"cat/1.png": image(), "dog/1.jpg": image(fmt="JPEG", size=(32, 32))[:-60]}, "dog/1.jpg.: corrupt or truncated"),
        ({"cat/1.png": image(), "dog/1.gif": b"GIF89a" + b"\0" * 30}, "zip entry 'dog/1.gif': not a supported image"),
        ({"cat/1.png": image(), "dog/1.png": image(size=(65, 64))}, "'dog/1.png': image is 65x64 .* max_image_pixels"),
        ({"cat/1.png": image(), "dog/1.png": b""}, "'dog/1.png': empty image"),
        ({"cat/1.png": image(), "cat/2.png": image()}, "at least 2 distinct labels"),
        ({"__MACOSX/x": b""}, "the zip holds no files"),
        ({f"c{i}/1.png": image() for i in range(5)}, "5 distinct labels, more than 4"),
        ({f"cat/{i}.png": image() for i in range(21)}, "more than 20 files .limit max_dataset_rows"),
        ({"cat/1.png": image(), "a-label-far-too-long/1.png": image()}, "label has 20 characters"),
    ],
)
def test_bad_zips_name_the_entry(tmp_path: Path, entries: dict[str, bytes], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_zip(make_zip(tmp_path / "a.zip", entries), tmp_path / "out", LIMITS)


def test_symlink_entries_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", {"cat/1.png": image(), "dog/1.png": image()}, symlinks=("dog/2.png",))
    with pytest.raises(InvalidArgument, match="'dog/2.png' is a symbolic link"):
        parse_zip(archive, tmp_path / "out", LIMITS)


def test_an_entry_with_an_empty_name_is_refused(tmp_path: Path) -> None:
    """Found by the long fuzz profile: zipfile's own is_dir() raised IndexError on it (an INTERNAL answer)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("cat/1.png", b"x")
        archive.writestr("dog/2.png", b"y")
    # zipfile cuts a name at its first NUL; the same length keeps every offset right
    (tmp_path / "a.zip").write_bytes(out.getvalue().replace(b"dog/2.png", b"\x00" * 9))
    with zipfile.ZipFile(tmp_path / "a.zip") as check:
        assert [info.filename for info in check.infolist()] == ["cat/1.png", ""]
    with pytest.raises(InvalidArgument, match="the zip has an entry with an empty name"):
        parse_zip(tmp_path / "a.zip", tmp_path / "out", LIMITS)


def test_an_entry_needing_a_newer_zip_version_is_refused(tmp_path: Path) -> None:
    """Found by the long fuzz profile: ZipFile() itself raises NotImplementedError for "version needed" 6.4."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("cat/1.png", b"x")
    data = bytearray(out.getvalue())
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 64  # the central directory's "version needed to extract": 6.4
    (tmp_path / "a.zip").write_bytes(bytes(data))
    with pytest.raises(InvalidArgument, match=r"not a readable zip archive \(zip file version 6.4\)"):
        parse_zip(tmp_path / "a.zip", tmp_path / "out", LIMITS)


def test_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "a.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(InvalidArgument, match="not a readable zip archive"):
        parse_zip(tmp_path / "a.zip", tmp_path / "out", LIMITS)


def test_zip_bomb_refused_from_declared_sizes(tmp_path: Path) -> None:
    # 2 MiB of zeros deflate to ~2 KiB: over max_bytes in total and over the compression ratio limit
    archive = make_zip(tmp_path / "a.zip", {"cat/1.png": image(), "dog/1.bmp": b"\0" * (2 << 20)})
    with pytest.raises(InvalidArgument, match="declare more than 1048576 bytes uncompressed"):
        parse_zip(archive, tmp_path / "out", LIMITS)
    roomy = ParseLimits(**{**LIMITS.__dict__, "max_bytes": 8 << 20})
    with pytest.raises(InvalidArgument, match=r"'dog/1.bmp' inflates \d+x .* a zip bomb"):
        parse_zip(archive, tmp_path / "out2", roomy)


def test_zip_whose_header_lies_about_its_size(tmp_path: Path) -> None:
    """The central directory declares a small size; the bytes really read are counted, never trusted."""
    big = image(size=(40, 40), fmt="BMP")
    archive = make_zip(tmp_path / "a.zip", {"cat/1.png": image(), "dog/1.bmp": big})
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("dog/1.bmp")
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"dog/1.bmp"))
    # NOTE: the uncompressed size sits 24 bytes into a central directory record
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    assert info.file_size == len(big)
    with pytest.raises(InvalidArgument, match="zip entry 'dog/1.bmp'"):
        parse_zip(archive, tmp_path / "out", LIMITS)


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_with_base64_images(tmp_path: Path) -> None:
    red = base64.b64encode(image()).decode()
    rows = [{"img": red, "y": "cat"}, {"img": "data:image/png;base64," + red, "y": "cat"},
            {"img": base64.b64encode(image((0, 9, 0), "WEBP")).decode(), "y": 3}]
    parsed = parse_image_jsonl(jsonl(tmp_path / "a.jsonl", rows), tmp_path / "out", Columns("img", "y"), LIMITS)
    assert parsed.label_counts == {"3": 1, "cat": 2}
    assert parsed.num_duplicates == 1
    assert stored_rows(tmp_path / "out")[2][0] == "images/000002.webp"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"image": "not base64!", "label": "a"}], "line 1: field 'image' is not valid base64"),
        ([{"image": "", "label": "a"}], "line 1: field 'image' is empty"),
        ([{"image": base64.b64encode(b"hello").decode(), "label": "a"}], "line 1: not a supported image"),
        ([{"image": base64.b64encode(image()).decode(), "label": "a"}, {"label": "b"}], "line 2: missing field 'image'"),
        ([{"image": 5, "label": "a"}], "line 1: field 'image' must be a string"),
        ([{"image": base64.b64encode(image()).decode(), "label": " "}], "line 1: empty label"),
    ],
)
def test_bad_jsonl_images_name_the_line(tmp_path: Path, rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_image_jsonl(jsonl(tmp_path / "a.jsonl", rows), tmp_path / "out", Columns("image"), LIMITS)
