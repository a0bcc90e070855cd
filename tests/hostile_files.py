"""Hostile upload files written record by record, cheaply and in bounded memory: a zip whose central directory lists
far more entries than it holds images (every record points at one tiny PNG, so only the first reads back), a JSONL
file that is one long line, and a CSV of many tiny rows. The tests, the fuzz strategies and `bench.hostile_inputs`
share them."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# a valid 1x1 PNG (PIL's output for a black RGB pixel), so that every entry of a directory bomb is a real image
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154789c636060600000000400"
    "01f61738550000000049454e44ae426082"
)
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_BLOCK = 1 << 16


def _entry_names(count: int) -> Iterator[bytes]:
    for index in range(count):
        yield f"c{index % 2}/{index:07d}.png".encode()


def write_directory_bomb(
    out: BinaryIO, entries: int, *, declared: int | None = None, declared_size: int | None = None,
    zip64: bool | None = None, names: Iterator[bytes] | None = None,
) -> None:
    """A zip holding one stored PNG and a central directory of `entries` records all pointing at it (class folders
    c0/ and c1/). `declared` and `declared_size` make the end record lie about the entry count and the directory's
    size; `zip64` forces (True) or forbids (False) the zip64 end records (default: when a count needs them)."""
    crc = zlib.crc32(TINY_PNG)
    first = b"c0/0000000.png"
    out.write(_LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0, crc, len(TINY_PNG), len(TINY_PNG), len(first), 0))
    out.write(first + TINY_PNG)
    start = out.tell()
    block = bytearray()
    for name in names if names is not None else _entry_names(entries):
        block += _CENTRAL.pack(b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, crc, len(TINY_PNG), len(TINY_PNG),
                               len(name), 0, 0, 0, 0, 0o100644 << 16, 0)
        block += name
        if len(block) >= _BLOCK:
            out.write(block)
            block.clear()
    out.write(block)
    end = out.tell()
    count = entries if declared is None else declared
    size = end - start if declared_size is None else declared_size
    if zip64 is None:
        zip64 = count > 0xFFFF or size > 0xFFFFFFFF
    if zip64:
        out.write(_END64.pack(b"PK\x06\x06", _END64.size - 12, 45, 45, 0, 0, count, count, size, start))
        out.write(_LOCATOR64.pack(b"PK\x06\x07", 0, end, 1))
        out.write(_END.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    else:
        out.write(_END.pack(b"PK\x05\x06", 0, 0, count & 0xFFFF, count & 0xFFFF, size & 0xFFFFFFFF, start, 0))


def directory_bomb(path: Path, entries: int, **options: object) -> Path:
    with open(path, "wb") as out:
        write_directory_bomb(out, entries, **options)  # type: ignore[arg-type]
    return path


def long_line_jsonl(path: Path, size: int) -> Path:
    """One JSONL row, `{"text": "aaa...", "label": "x"}`, of `size` bytes and no newline: written in blocks."""
    head, tail = b'{"text": "', b'", "label": "x"}'
    with open(path, "wb") as out:
        out.write(head)
        left = size - len(head) - len(tail)
        chunk = b"a" * (1 << 20)
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
        out.write(tail)
    return path


def tiny_rows_csv(path: Path, rows: int) -> Path:
    """`rows` distinct tiny rows (`t0000042,a`) under a text,label header, two labels."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("text,label\n")
        for start in range(0, rows, 10_000):
            out.write("".join(f"t{i:07d},{'ab'[i % 2]}\n" for i in range(start, min(start + 10_000, rows))))
    return path
