"""The image dataset parsers on random and nearly-right zips and JSONL files, directly and through UploadDataset on a
real server: they store images whose rows respect the limits, or raise InvalidArgument; nothing else, nothing
written outside the staging directory, and the server stays healthy."""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz.harness import Target, assert_healthy, fuzz_settings, invoke, serving
from tests.fuzz.image_strategies import directory_bombs, image_jsonl_files, zip_files
from tests.fuzz.test_rpcs import UPLOAD, _chunked
from tuneserve.core.data.image_parsing import parse_image_jsonl, parse_zip
from tuneserve.core.data.parsing import ParsedDataset, ParseLimits
from tuneserve.core.data.targets import Columns
from tuneserve.core.data.zip_directory import count_records, read_end_record
from tuneserve.errors import InvalidArgument
from tuneserve_client.proto.tuneserve.v1 import datasets_pb2

LIMITS = ParseLimits(max_rows=8, max_labels=4, max_text_chars=200, max_label_chars=32, max_image_pixels=20 * 20,
                     max_bytes=64 * 1024)


def _check(parse: object, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        upload, out = Path(tmp) / "upload", Path(tmp) / "staged"
        upload.write_bytes(content)
        try:
            parsed = parse(upload, out)  # type: ignore[operator]
        except InvalidArgument as exc:
            assert exc.message
            event("InvalidArgument: " + re.sub(r"^(line \d+|zip entry '[^']*'): ", "", exc.message)[:32])
            return
        event("parsed")
        assert isinstance(parsed, ParsedDataset) and parsed.modality == "image"
        lines = (out / "data.jsonl").read_text("utf-8").split("\n")[:-1]
        rows = [(row["image"], row["label"]) for row in map(json.loads, lines)]
        assert 0 < parsed.num_rows == len(rows) <= LIMITS.max_rows
        assert 2 <= len(parsed.label_counts) <= LIMITS.max_labels
        written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert written == sorted([*(path for path, _ in rows), "data.jsonl"])  # all inside the staged directory
        for _, label in rows:
            assert label and label == label.strip() and len(label) <= LIMITS.max_label_chars


@given(content=st.one_of(zip_files(), directory_bombs()))
def test_parse_zip_returns_images_or_invalid_argument(content: bytes) -> None:
    _check(lambda upload, out: parse_zip(upload, out, LIMITS), content)


@given(content=st.one_of(zip_files(), directory_bombs()))
def test_the_central_directory_is_sized_up_as_zipfile_reads_it(content: bytes) -> None:
    """Where zipfile opens the archive, the end record read before it names the same directory, and the records
    counted there are the ones zipfile builds: the check bounds what ZipFile then parses."""
    file = io.BytesIO(content)
    try:
        with zipfile.ZipFile(file) as archive:
            infos, start = archive.infolist(), archive.start_dir
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        event("zipfile refuses it")
        return
    directory = read_end_record(file)
    assert directory is not None and directory.start == start
    assert count_records(file, directory, stop_after=len(infos) + 1) == len(infos)
    event(f"zipfile parses it ({'lying' if directory.entries != len(infos) else 'truthful'} end record)")


@given(content=image_jsonl_files())
def test_parse_image_jsonl_returns_images_or_invalid_argument(content: bytes) -> None:
    _check(lambda upload, out: parse_image_jsonl(upload, out, Columns("image"), LIMITS), content)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    settings = fuzz_settings(tmp_path_factory.mktemp("fuzz-images"), max_concurrent_jobs=0)
    settings.limits.max_image_pixels = 20 * 20
    with serving(settings) as target:
        yield target


@given(data=st.data())
def test_image_uploads_get_proper_status_codes(target: Target, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="zip"):
        content, metadata = data.draw(zip_files(), label="zip"), datasets_pb2.DatasetUploadMetadata(name="d.zip")
    else:
        content = data.draw(image_jsonl_files(), label="jsonl")
        metadata = datasets_pb2.DatasetUploadMetadata(name="d.jsonl", image_column="image")
    cuts = data.draw(st.lists(st.integers(1, 4096), max_size=3), label="cuts")
    invoke(target, UPLOAD, _chunked(metadata, content, cuts))
    assert_healthy(target)
