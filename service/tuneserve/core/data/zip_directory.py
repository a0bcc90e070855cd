"""Size up a zip's central directory before `zipfile.ZipFile` parses it.

`ZipFile(path)` builds a `ZipInfo` (~550 bytes) for every central-directory record before any limit can be checked,
and it reads records until the directory's declared size is used up, whatever entry count the end record gives: a
118 MB zip listing 2,000,000 records cost 17 s and 1.1 GB. `check_central_directory` reads the end-of-central-directory
record (and the zip64 one it points to) the way `zipfile` finds them, refuses a directory that lists more entries than
allowed or is larger than those entries can need, then walks the records' fixed headers (no object per record) to
make sure the directory holds no more records than the end record declares.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from tuneserve.errors import InvalidArgument

_END = struct.Struct("<4s4H2LH")           # end of central directory record
_END64 = struct.Struct("<4sQ2H2L4Q")       # zip64 end of central directory record
_LOCATOR64 = struct.Struct("<4sLQL")       # zip64 end of central directory locator
_RECORD = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header
_MAX_COMMENT = 0xFFFF
# NOTE: a record is 46 bytes plus its name, extra field and comment; an image's path (a top folder, a label of at most
# max_name_chars characters, a file name) with the usual extra fields stays far below this on average
MAX_RECORD_BYTES = _RECORD.size + 4096
_BLOCK = 1 << 20


@dataclass(frozen=True)
class CentralDirectory:
    entries: int     # as the end record declares them
    size: int        # bytes
    start: int       # where it starts in the file (after any bytes prepended to the archive, as zipfile computes it)


def check_central_directory(file: BinaryIO, max_entries: int, limit_name: str) -> CentralDirectory:
    """Refuse (InvalidArgument naming `limit_name`) a zip whose central directory lists more than `max_entries`
    entries, is larger than that many entries need, or holds more records than it declares. A file with no end
    record passes: zipfile refuses it."""
    directory = read_end_record(file)
    if directory is None:
        return CentralDirectory(0, 0, 0)
    if directory.entries > max_entries:
        raise InvalidArgument(
            f"the zip's central directory lists {directory.entries} entries, more than {max_entries} ({limit_name}); "
            "folders and __MACOSX/ copies count too"
        )
    if directory.size > max(directory.entries, 1) * MAX_RECORD_BYTES:
        raise InvalidArgument(
            f"the zip's central directory is {directory.size} bytes for {directory.entries} entries, more than "
            f"{MAX_RECORD_BYTES} bytes per entry: a damaged or hostile archive"
        )
    records = count_records(file, directory, stop_after=max(directory.entries, 1))
    if records > directory.entries:
        raise InvalidArgument(
            f"the zip's central directory holds more records than the {directory.entries} its end record declares: "
            "a damaged or hostile archive; rebuild it with a zip tool"
        )
    return directory


def read_end_record(file: BinaryIO) -> CentralDirectory | None:
    """The central directory as the end record (zip64 when present) declares it, found as `zipfile` finds it: the
    last end-record signature within the final 64 KiB + 22 bytes. None when there is none (not a zip)."""
    file.seek(0, 2)
    file_size = file.tell()
    tail_start = max(file_size - _MAX_COMMENT - _END.size, 0)
    file.seek(tail_start)
    tail = file.read()
    # NOTE: zipfile first tries a comment-less record at the very end, then the last signature in the tail: both
    # name the same record unless the comment holds a signature, which its second rule (rfind) also picks
    at = len(tail) - _END.size
    if not (at >= 0 and tail[at : at + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _END.size:
            return None
    _, _, _, _, entries, size, offset, _ = _END.unpack_from(tail, at)
    location = tail_start + at
    concat = location - size - offset
    zip64 = _read_zip64(file, location)
    if zip64 is not None:
        entries, size, offset = zip64
        concat = location - size - offset - _END64.size - _LOCATOR64.size
    return CentralDirectory(entries, size, max(offset + concat, 0))


def _read_zip64(file: BinaryIO, location: int) -> tuple[int, int, int] | None:
    """(entries, size, offset) from the zip64 end record just before the end record at `location`, when there is one
    (the locator right before it, as zipfile looks for it)."""
    if location < _LOCATOR64.size + _END64.size:
        return None
    file.seek(location - _LOCATOR64.size)
    signature, disk, _, disks = _LOCATOR64.unpack(file.read(_LOCATOR64.size))
    if signature != b"PK\x06\x07":
        return None
    if disk != 0 or disks > 1:
        raise InvalidArgument("the zip spans several disks (a split archive); zip the images into one file")
    file.seek(location - _LOCATOR64.size - _END64.size)
    record = _END64.unpack(file.read(_END64.size))
    if record[0] != b"PK\x06\x06":
        return None
    return record[7], record[8], record[9]


def count_records(file: BinaryIO, directory: CentralDirectory, stop_after: int) -> int:
    """The records in the directory's bytes, counted as zipfile reads them (46-byte header, then name, extra field
    and comment), up to `stop_after` + 1; a damaged record ends the count (zipfile then refuses the archive)."""
    file.seek(directory.start)
    left, buffer, at, count = directory.size, b"", 0, 0
    while count <= stop_after:
        if len(buffer) - at < _RECORD.size:
            chunk = file.read(min(_BLOCK, left)) if left > 0 else b""
            if not chunk:
                break
            left -= len(chunk)
            buffer, at = buffer[at:] + chunk, 0
            continue
        if buffer[at : at + 4] != b"PK\x01\x02":
            break
        name, extra, comment = struct.unpack_from("<3H", buffer, at + 28)
        at += _RECORD.size + name + extra + comment
        count += 1
        if at > len(buffer):  # the record's name, extra field or comment runs past the bytes read: skip the rest
            skip = at - len(buffer)
            if skip > left:
                break
            file.seek(skip, 1)
            left -= skip
            buffer, at = b"", 0
    return count
