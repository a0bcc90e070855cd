"""Sizing up a zip's central directory from its end record, before zipfile parses it (hostile zips of a few KB)."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from tests.hostile_files import directory_bomb, write_directory_bomb
from tuneserve.core.data.image_parsing import parse_zip, zip_entry_limit
from tuneserve.core.data.parsing import ParseLimits
from tuneserve.core.data.zip_directory import check_central_directory, count_records, read_end_record
from tuneserve.errors import InvalidArgument

LIMITS = ParseLimits(max_rows=100, max_labels=4, max_text_chars=100, max_label_chars=16)


def _bomb(entries: int, **options: object) -> io.BytesIO:
    out = io.BytesIO()
    write_directory_bomb(out, entries, **options)  # type: ignore[arg-type]
    out.seek(0)
    return out


@pytest.mark.parametrize("zip64", [False, True])
def test_the_end_record_is_read_as_zipfile_reads_it(zip64: bool) -> None:
    file = _bomb(300, zip64=zip64)
    directory = read_end_record(file)
    with zipfile.ZipFile(file) as archive:
        assert directory is not None
        assert (directory.entries, directory.start) == (300, archive.start_dir)
        assert count_records(file, directory, stop_after=10_000) == len(archive.infolist()) == 300


def test_bytes_before_the_archive_and_a_comment_are_allowed_for(tmp_path: Path) -> None:
    """A self-extracting archive (bytes prepended) and an archive comment: the offsets still match zipfile's."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("cat/1.png", b"x")
        archive.writestr("dog/1.png", b"y")
        archive.comment = b"a comment" + b"!" * 200
    file = io.BytesIO(b"#!/bin/sh\n" * 50 + out.getvalue())
    directory = read_end_record(file)
    with zipfile.ZipFile(file) as archive:
        assert directory is not None and directory.start == archive.start_dir
        assert count_records(file, directory, stop_after=10) == 2


def test_a_listing_over_the_limit_is_refused_from_the_end_record() -> None:
    # 10 million entries declared (zip64), 3 records present: refused without reading them
    with pytest.raises(InvalidArgument, match=r"lists 10000000 entries, more than 110 \(limit max_dataset_rows"):
        check_central_directory(_bomb(3, declared=10_000_000), 110, "limit max_dataset_rows")


def test_a_directory_larger_than_its_entries_need_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="central directory is 50000000 bytes for 3 entries"):
        check_central_directory(_bomb(3, declared_size=50_000_000), 110, "limit")


def test_more_records_than_declared_is_refused() -> None:
    """The end record lies (50 entries) about a directory of 2000 records that fits 50 entries' room: zipfile would
    parse all of them."""
    with pytest.raises(InvalidArgument, match="holds more records than the 50 its end record declares"):
        check_central_directory(_bomb(2000, declared=50, zip64=False), 110, "limit")


def test_not_a_zip_is_left_to_zipfile() -> None:
    assert check_central_directory(io.BytesIO(b"PK\x03\x04 not a zip"), 10, "limit").entries == 0


def test_parse_zip_refuses_a_directory_bomb_in_bounded_memory(tmp_path: Path) -> None:
    """200,000 records (12 MB) all pointing at one PNG, against max_rows 100: refused before ZipFile parses them
    (which costs ~550 bytes a record: ~110 MB here)."""
    bomb = directory_bomb(tmp_path / "bomb.zip", 200_000)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidArgument, match=rf"lists 200000 entries, more than {zip_entry_limit(LIMITS)}"):
            parse_zip(bomb, tmp_path / "out", LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_legitimate_listing_at_the_limit_passes(tmp_path: Path) -> None:
    """max_rows images plus a folder per label: the check lets it through to zipfile (whose own checks follow)."""
    names = iter([b"c0/", b"c1/", *(f"c{i % 2}/{i:07d}.png".encode() for i in range(100))])
    bomb = directory_bomb(tmp_path / "ok.zip", 102, names=names)
    with open(bomb, "rb") as file:
        assert check_central_directory(file, zip_entry_limit(LIMITS), "limit").entries == 102
