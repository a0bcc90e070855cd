"""Hostile dataset uploads cost the server little: a zip whose central directory lists millions of entries is refused
from its end record, a JSONL file that is one huge line is refused after reading the line limit, each naming the limit
and the setting (issue 16, items 1 and 8)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import ServerThread, make_settings
from tests.hostile_files import directory_bomb, long_line_jsonl
from tests.integration.server_process import ServerProcess
from tuneserve_client import Client, InvalidArgument

MIB = 1 << 20


@pytest.fixture
def small_limits(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    settings = make_settings(tmp_path / "data", tmp_path_factory.getbasetemp())
    settings.limits.max_dataset_rows = 1000
    settings.limits.max_labels = 10
    server = ServerThread(settings).start()
    try:
        with Client(server.target, timeout=60) as client:
            yield client
    finally:
        server.close()


def test_a_zip64_end_record_listing_millions_of_entries_is_refused(small_limits: Client, tmp_path: Path) -> None:
    """A few KB that declare 8,000,000 entries: refused from the zip64 end record, naming the limit and the setting."""
    bomb = directory_bomb(tmp_path / "bomb.zip", 50, declared=8_000_000, zip64=True)
    assert bomb.stat().st_size < 8192
    with pytest.raises(InvalidArgument, match=r"lists 8000000 entries, more than 1022 \(limit max_dataset_rows"):
        small_limits.upload_dataset(bomb)
    assert small_limits.list_datasets().datasets == []


def test_a_central_directory_of_too_many_records_is_refused_before_parsing(
    small_limits: Client, tmp_path: Path
) -> None:
    truthful = directory_bomb(tmp_path / "many.zip", 5000)
    with pytest.raises(InvalidArgument, match=r"lists 5000 entries, more than 1022 \(limit max_dataset_rows"):
        small_limits.upload_dataset(truthful)
    lying = directory_bomb(tmp_path / "lying.zip", 5000, declared=900, zip64=False)
    with pytest.raises(InvalidArgument, match="holds more records than the 900 its end record declares"):
        small_limits.upload_dataset(lying)


def test_a_long_line_is_refused_naming_the_line_and_the_setting(client: Client, tmp_path: Path) -> None:
    line = long_line_jsonl(tmp_path / "line.jsonl", 17 * MIB)
    with pytest.raises(InvalidArgument, match=r"^line 1: longer than 16777216 bytes \(limit max_line_bytes\)"):
        client.upload_dataset(line)
    csv = tmp_path / "a.csv"
    csv.write_text("text,label\nhello,a\n" + "x" * (17 * MIB) + ",b\n")
    with pytest.raises(InvalidArgument, match=r"^line 3: longer than 16777216 bytes \(limit max_line_bytes\)"):
        client.upload_dataset(csv)


def test_a_huge_single_line_costs_the_server_process_little(tmp_path: Path, tiny_bert: Path) -> None:
    """A 96 MiB single-line JSONL through a real `tuneserve serve` with the default limits: read whole it cost ~4x
    its size (the bytes, the str, json's copy); now the server reads 16 MiB of it and refuses."""
    line = long_line_jsonl(tmp_path / "line.jsonl", 96 * MIB)
    server = ServerProcess(tmp_path / "data", tiny_bert.parent).start()
    try:
        process = psutil.Process(server.pid)
        base = peak = process.memory_info().rss
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.01):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        with Client(server.target, timeout=120) as client, pytest.raises(
            InvalidArgument, match=r"^line 1: longer than 16777216 bytes \(limit max_line_bytes\)"
        ):
            client.upload_dataset(line)
        elapsed = time.monotonic() - started
        done.set()
        sampler.join()
        assert peak - base < 80 * MIB, f"the server grew {(peak - base) / MIB:.0f} MiB"
        assert elapsed < 30
    finally:
        server.stop()
