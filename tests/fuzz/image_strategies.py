"""Hypothesis strategies for image datasets: encoded images (valid, truncated, bit-flipped, random bytes), zip archives
of nearly-right class folders (hostile entry names, symlinks, damaged archives, central-directory bombs whose end
record lies) and JSONL rows with base64 images."""

from __future__ import annotations

import base64
import io
import json
import stat
import warnings
import zipfile
from functools import cache

from hypothesis import strategies as st
from PIL import Image

from tests.hostile_files import write_directory_bomb

_FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"]     # the last two are refused by the service


@cache
def _encoded(fmt: str, width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (width * 7 % 256, height * 13 % 256, 90)).save(out, format=fmt)
    return out.getvalue()


_VALID = st.builds(_encoded, st.sampled_from(_FORMATS), st.integers(1, 24), st.integers(1, 24))
_ACCEPTED = st.builds(_encoded, st.sampled_from(_FORMATS[:4]), st.integers(1, 20), st.integers(1, 20))


@st.composite
def _flipped(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(_VALID))
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    return bytes(data)


def accepted_images() -> st.SearchStrategy[bytes]:
    """Images the service accepts (JPEG, PNG, WEBP, BMP; at most 20x20 pixels)."""
    return _ACCEPTED


def image_bytes() -> st.SearchStrategy[bytes]:
    """Mostly images, some truncated or with bytes changed, some random bytes."""
    truncated = st.tuples(_VALID, st.integers(0, 200)).map(lambda t: t[0][: max(0, len(t[0]) - t[1])])
    return st.one_of(_VALID, _VALID, _VALID, _VALID, truncated, _flipped(), st.binary(max_size=64))


_NAMES = st.sampled_from(["a", "b", "c", "ü", "x" * 40, " ", ".hidden", "__MACOSX", "..", ".", "", "C:", "a\\b"])


@st.composite
def _entry_name(draw: st.DrawFn) -> str:
    parts = draw(st.lists(_NAMES, min_size=1, max_size=4))
    name = "/".join(parts) + draw(st.sampled_from([".png", ".jpg", "", "/"]))
    return draw(st.sampled_from(["", "/", "top/"])) + name


_GOOD_NAMES = st.tuples(st.sampled_from(["cat", "dog", "bird"]), st.integers(0, 99)).map(lambda t: f"{t[0]}/{t[1]}.png")


@st.composite
def directory_bombs(draw: st.DrawFn) -> bytes:
    """A zip whose central directory lists 0-300 records all pointing at one PNG, its end record (zip64 or not)
    telling the truth or lying about the count and the size, maybe after bytes prepended to the archive."""
    out = io.BytesIO()
    out.write(draw(st.sampled_from([b"", b"#!/bin/sh\n", b"PK\x05\x06" + b"\0" * 18])))
    entries = draw(st.integers(0, 300))
    lie = st.one_of(st.none(), st.integers(0, 20_000_000), st.sampled_from([0xFFFF, 0xFFFFFFFF, 2**63]))
    write_directory_bomb(
        out, entries, declared=draw(lie, label="declared"), declared_size=draw(lie, label="declared_size"),
        zip64=draw(st.sampled_from([None, True, False]), label="zip64"),
    )
    return out.getvalue()


@st.composite
def zip_files(draw: st.DrawFn) -> bytes:
    """A zip of 0-12 entries: mostly `label/file` with an image, and hostile names, symlinks, a damaged archive; one
    in eight a central-directory bomb."""
    if draw(st.integers(0, 7)) == 0:
        return draw(directory_bombs())
    if draw(st.booleans()):  # NOTE: half are well-formed datasets, so the accepting path is fuzzed too
        entries = draw(st.lists(st.tuples(_GOOD_NAMES, _ACCEPTED), min_size=2, max_size=8))
    else:
        names = st.one_of(_GOOD_NAMES, _GOOD_NAMES, _GOOD_NAMES, _entry_name())
        entries = draw(st.lists(st.tuples(names, image_bytes()), max_size=12))
    symlink = draw(st.integers(-1, 4 * len(entries)))     # NOTE: an index past the entries (most often): no link
    out = io.BytesIO()
    compression = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    # NOTE: repeated entry names are a case to fuzz, not a mistake to warn about
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", compression) as archive:
        warnings.simplefilter("ignore", UserWarning)
        for index, (name, data) in enumerate(entries):
            info = zipfile.ZipInfo(name)
            if index == symlink:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    content = out.getvalue()
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip"]))
    if damage == "truncate":
        return content[: draw(st.integers(0, len(content)))]
    if damage == "flip" and content:
        index = draw(st.integers(0, len(content) - 1))
        return content[:index] + bytes([draw(st.integers(0, 255))]) + content[index + 1:]
    return content


@st.composite
def image_jsonl_files(draw: st.DrawFn) -> bytes:
    """JSONL rows {"image": base64, "label": ...}: valid, damaged images, bad base64, wrong types, non-JSON lines."""
    rows = []
    clean = draw(st.booleans())   # NOTE: half are well-formed datasets, so the accepting path is fuzzed too
    for _ in range(draw(st.integers(0, 8))):
        kind = "clean" if clean else draw(st.sampled_from(["good"] * 4 + ["base64", "type", "line"]))
        label = draw(st.sampled_from(["cat", "dog", 3] if clean else ["cat", "dog", "", " ", "x" * 40, 3]))
        if kind == "clean":
            rows.append(json.dumps({"image": base64.b64encode(draw(_ACCEPTED)).decode(), "label": label}))
        elif kind == "good":
            rows.append(json.dumps({"image": base64.b64encode(draw(image_bytes())).decode(), "label": label}))
        elif kind == "base64":
            rows.append(json.dumps({"image": draw(st.text(max_size=20)), "label": label}))
        elif kind == "type":
            rows.append(json.dumps({"image": draw(st.sampled_from([None, 1, [], {}])), "label": label}))
        else:
            rows.append(draw(st.text(max_size=30)))
    return ("\n".join(rows) + "\n").encode()
