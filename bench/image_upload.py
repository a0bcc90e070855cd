"""What validating an image upload costs, and how fast hostile zips are refused.

    python -m bench.image_upload [--size PX] [--repeat N]

scikit-learn's digits (1797 8x8 grey images) upscaled to --size PNGs (64 by default) in a zip of class folders:
`parse_zip` in-process (every image decoded once through engines.imaging.decode_image, written under images/), then
`ArtifactStore.publish_dir` alone on such a parsed directory (making its 1797 files durable and renaming it into
place), then the same zip through UploadDataset on a server process (streaming, staging, atomic publish, SQLite
record). Then three hostile zips through the service, each timed to its INVALID_ARGUMENT: a zip bomb (1 GiB of
zeros declared, ~1 MiB sent), a decompression bomb (a 20000x20000 PNG header, ~0.1 MB), and a `..` entry after 1797
good images.
Prints medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import io
import statistics
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from bench._common import machine, server
from tuneserve.core.data.image_parsing import parse_zip
from tuneserve.core.data.parsing import ParseLimits
from tuneserve.settings import LimitSettings
from tuneserve.store import ArtifactStore
from tuneserve_client import Client, InvalidArgument


def digits_zip(size: int) -> tuple[bytes, dict[str, bytes]]:
    digits = load_digits()
    entries = {}
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        image = Image.fromarray(np.uint8(pixels * 255 / 16)).resize((size, size), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="PNG")
        entries[f"digits/{target}/{i:04d}.png"] = out.getvalue()
    return _zip(entries), entries


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("a/bomb.bmp", "w", force_zip64=True) as entry:
            block = b"\0" * (1 << 20)
            for _ in range(1024):
                entry.write(block)
        archive.writestr("b/ok.png", _png_header(8, 8))
    return out.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (the pixel data is one empty row: never decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def timed(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def publish_seconds(upload: Path, tmp: Path, limits: ParseLimits, repeat: int) -> float:
    """Median time of `publish_dir` alone, each time on a freshly parsed (so not yet written back) directory."""
    artifacts = ArtifactStore(tmp / "artifacts")
    times = []
    for n in range(repeat):
        staged = artifacts.temp_dir()
        parse_zip(upload, staged, limits)
        started = time.perf_counter()
        artifacts.publish_dir(staged, artifacts.dataset_dir(f"ds-{n}"))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def refused(client: Client, data: bytes, name: str) -> Callable[[], None]:
    def call() -> None:
        try:
            client.upload_dataset_bytes(data, name=name)
        except InvalidArgument:
            return
        raise AssertionError(f"{name} was accepted")
    return call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data, entries = digits_zip(args.size)
    defaults = LimitSettings()
    limits = ParseLimits(defaults.max_dataset_rows, defaults.max_labels, defaults.max_text_chars,
                         defaults.max_name_chars, defaults.max_image_pixels, defaults.max_dataset_bytes)
    print(machine())
    print(f"{len(entries)} digits as {args.size}x{args.size} PNG, zip {len(data) / 1e6:.2f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / "upload.zip"
        upload.write_bytes(data)
        runs = iter(range(10**6))
        seconds = timed(lambda: parse_zip(upload, Path(tmp) / f"out{next(runs)}", limits), args.repeat)
        print(f"parse_zip in-process: {seconds:.2f} s ({len(entries) / seconds:.0f} images/s)")
        print(f"publish_dir of the parsed images: {publish_seconds(upload, Path(tmp), limits, args.repeat):.2f} s")
        with server(Path(tmp) / "data") as target, Client(target, timeout=300) as client:
            seconds = timed(lambda: client.upload_dataset_bytes(data, name="digits.zip"), args.repeat)
            print(f"UploadDataset through the service: {seconds:.2f} s ({len(entries) / seconds:.0f} images/s)")
            bomb = zip_bomb()
            hostile = {
                f"zip bomb (1 GiB declared, {len(bomb) / 1e6:.1f} MB sent)": (bomb, "bomb.zip"),
                "decompression bomb (20000x20000 PNG header)": (
                    _zip({"a/big.png": _png_header(20000, 20000), "b/ok.png": entries[next(iter(entries))]}),
                    "pixels.zip",
                ),
                f"'..' entry after {len(entries)} good images": (
                    _zip({**entries, "../escape.png": entries[next(iter(entries))]}), "slip.zip",
                ),
            }
            for what, (content, name) in hostile.items():
                print(f"refused {what}: {timed(refused(client, content, name), args.repeat) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
