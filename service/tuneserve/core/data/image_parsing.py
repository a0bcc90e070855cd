"""Parse and validate an uploaded image dataset, writing each accepted image into a staged dataset directory.

Two upload formats:
- `zip`: class folders (ImageFolder layout), `cat/001.jpg`, optionally all under one top folder (`pets/cat/001.jpg`);
  the folder name is the label. Folders and files whose name starts with "." and macOS `__MACOSX/` metadata are
  skipped; any other entry outside a class folder is refused.
- `jsonl` with an image column: one JSON object per line, `{"image": "<base64>", "label": "cat"}` (a `data:...;base64,`
  prefix is allowed), or with the target of another task as for text (`"labels": [...]`: multi-label; `"target": 1.5`:
  regression; `core.data.targets`); image rows have no text pairs. A zip's rows are single labels (classification).

Every image goes through `engines.imaging.decode_image` (format, pixel limit, corruption) and is stored as its
original bytes under `images/NNNNNN.<ext>` (extension from the detected format). A zip is read defensively: its central
directory is sized up from its end record before `zipfile` parses it (`zip_directory`), entries leading out of the
archive (absolute paths, `..`, symlinks) are refused, and the uncompressed total is checked from the declared sizes
before extracting and again from the bytes really read. Every problem is `InvalidArgument`
naming the zip entry or the line.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from PIL import Image

from tuneserve.core.data.limits import ParseLimits, check_label
from tuneserve.core.data.parsing import ParsedDataset, RowWriter
from tuneserve.core.data.records import decoded_lines, jsonl_records
from tuneserve.core.data.targets import Columns, RowReader, Shape
from tuneserve.core.data.zip_directory import check_central_directory
from tuneserve.engines.imaging import FORMATS, ImageError, decode_image
from tuneserve.errors import InvalidArgument

IMAGES_DIR = "images"
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
# NOTE: JPEG/PNG/WEBP are compressed already and deflate barely shrinks them; an entry that inflates more than this
# (past a megabyte) is a zip bomb, refused before a byte of it is inflated.
MAX_COMPRESSION_RATIO = 200
_RATIO_FLOOR_BYTES = 1 << 20
_DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")


class _ImageWriter:
    """Validates image bytes and writes them as `images/NNNNNN.<ext>` under `root`, each with its row in
    `data.jsonl` ({"image": "images/NNNNNN.<ext>", <target field>: ...}; duplicates counted from the image bytes)."""

    def __init__(self, root: Path, rows: RowWriter, max_pixels: int) -> None:
        (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._root = root
        self._rows = rows
        self._max_pixels = max_pixels
        self._count = 0

    def add(self, data: bytes, target: object, where: str, shape: Shape | None = None) -> None:
        try:
            decode_image(data, max_pixels=self._max_pixels)
        except ImageError as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        # NOTE: decode_image returns an RGB copy, which has lost the format; reading the header again is cheap
        with Image.open(io.BytesIO(data), formats=FORMATS) as header:
            extension = _EXTENSIONS[header.format or ""]
        relative = f"{IMAGES_DIR}/{self._count:06d}.{extension}"
        (self._root / relative).write_bytes(data)
        self._count += 1
        self._rows.add(relative, target, where, shape, content=data)


# -- zip of class folders ------------------------------------------------------------------------------------------

def zip_entry_limit(limits: ParseLimits) -> int:
    """Most central-directory entries a zip may list: max_rows images plus room for a folder per label and a top
    folder, each possibly twice (macOS adds a `__MACOSX/` copy of the folders)."""
    return limits.max_rows + 2 * (limits.max_labels + 1)


def parse_zip(path: Path, out_dir: Path, limits: ParseLimits) -> ParsedDataset:
    with open(path, "rb") as file:
        # NOTE: before ZipFile, which builds an object per central-directory record before any limit is checked
        check_central_directory(file, zip_entry_limit(limits), "limit max_dataset_rows, plus room for the folders")
        try:
            archive = zipfile.ZipFile(file)
        # NOTE: NotImplementedError: an entry that needs a newer zip version than Python reads (found by the fuzzer)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
            raise InvalidArgument(f"not a readable zip archive ({exc})") from None
        with archive:
            return _extract(archive, out_dir, limits)


def _extract(archive: zipfile.ZipFile, out_dir: Path, limits: ParseLimits) -> ParsedDataset:
    entries = _image_entries(archive.infolist(), limits)
    with RowWriter(out_dir, "image", limits) as rows:
        writer = _ImageWriter(out_dir, rows, limits.max_image_pixels)
        total = 0
        for info, label in entries:
            data = _read_entry(archive, info)
            total += len(data)
            if total > limits.max_bytes:
                raise InvalidArgument(
                    f"zip entry {info.filename!r}: the archive inflates past {limits.max_bytes} bytes "
                    "(limit max_dataset_bytes)"
                )
            writer.add(data, label, f"zip entry {info.filename!r}")
    return rows.result()


def _image_entries(infos: list[zipfile.ZipInfo], limits: ParseLimits) -> list[tuple[zipfile.ZipInfo, str]]:
    """The archive's image files with their labels, in path order, after every check that needs no inflating."""
    files: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    declared = 0
    for info in infos:
        if not info.filename:  # NOTE: ZipInfo.is_dir() itself raises IndexError on an empty name
            raise InvalidArgument("the zip has an entry with an empty name; rebuild the archive with a zip tool")
        parts = _safe_parts(info)
        if info.is_dir() or _skipped(parts):
            continue
        files.append((info, parts))
        if len(files) > limits.max_rows:
            raise InvalidArgument(f"the zip holds more than {limits.max_rows} files (limit max_dataset_rows)")
        declared += info.file_size
        if declared > limits.max_bytes:
            raise InvalidArgument(
                f"the zip's entries declare more than {limits.max_bytes} bytes uncompressed (limit max_dataset_bytes)"
            )
        if info.file_size > _RATIO_FLOOR_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise InvalidArgument(
                f"zip entry {info.filename!r} inflates {info.file_size // max(info.compress_size, 1)}x "
                f"({info.compress_size} -> {info.file_size} bytes), more than {MAX_COMPRESSION_RATIO}x: a zip bomb?"
            )
        if info.flag_bits & 0x1:
            raise InvalidArgument(f"zip entry {info.filename!r} is encrypted; zip the images without a password")
    if not files:
        raise InvalidArgument("the zip holds no files: put the images in class folders (cat/001.jpg, dog/002.jpg)")
    strip = _top_folder_depth([parts for _, parts in files])
    labelled = []
    for info, parts in files:
        parts = parts[strip:]
        if len(parts) != 2:
            where = "is not in a class folder" if len(parts) < 2 else "is nested below a class folder"
            raise InvalidArgument(
                f"zip entry {info.filename!r} {where}: put each image directly in a folder named after its label "
                "(cat/001.jpg), optionally all under one top folder"
            )
        labelled.append((info, check_label(parts[0], f"zip entry {info.filename!r}", limits)))
    distinct = len({label for _, label in labelled})
    if distinct > limits.max_labels:
        raise InvalidArgument(f"{distinct} distinct labels, more than {limits.max_labels} (limit max_labels)")
    return sorted(labelled, key=lambda item: (item[1], item[0].filename))


def _safe_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The entry's path components; InvalidArgument when it could lead outside the archive root."""
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if (
        path.is_absolute()
        or re.match(r"^[A-Za-z]:", name)
        or ".." in path.parts
        or "\x00" in name
    ):
        raise InvalidArgument(f"zip entry {info.filename!r} points outside the archive root (absolute path or '..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidArgument(f"zip entry {info.filename!r} is a symbolic link; zip the image files themselves")
    return tuple(p for p in path.parts if p not in ("", "."))


def _skipped(parts: tuple[str, ...]) -> bool:
    return not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def _top_folder_depth(paths: list[tuple[str, ...]]) -> int:
    """1 when every file sits at top/class/file under the same top folder, else 0."""
    tops = {parts[0] for parts in paths}
    return 1 if len(tops) == 1 and all(len(parts) == 3 for parts in paths) else 0


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with archive.open(info) as entry:
            # NOTE: never more than the declared size (+1 to catch a header that lies about it)
            data = entry.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise InvalidArgument(f"zip entry {info.filename!r} cannot be extracted ({exc})") from None
    if len(data) != info.file_size:
        raise InvalidArgument(
            f"zip entry {info.filename!r} holds {len(data)} bytes but its header declares {info.file_size}"
        )
    return data


# -- JSONL with base64 images --------------------------------------------------------------------------------------

def parse_image_jsonl(path: Path, out_dir: Path, columns: Columns, limits: ParseLimits) -> ParsedDataset:
    """`columns.value` names the image field (`columns.images` is set here)."""
    columns = dataclasses.replace(columns, images=True)
    with open(path, "rb") as raw, RowWriter(out_dir, "image", limits) as rows:
        writer = _ImageWriter(out_dir, rows, limits.max_image_pixels)
        reader = RowReader(columns, limits)
        for row in reader.rows(jsonl_records(decoded_lines(raw, limits.max_line_bytes))):
            writer.add(_base64(row.value, row.number, columns.value), row.target, f"line {row.number}", reader.shape)
    return rows.result()


def _base64(encoded: str, number: int, column: str) -> bytes:
    text = _DATA_URL.sub("", encoded.strip(), count=1)
    if not text:
        raise InvalidArgument(f"line {number}: field {column!r} is empty; it must hold a base64-encoded image")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"line {number}: field {column!r} is not valid base64 ({exc})") from None
