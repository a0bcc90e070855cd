"""The checked-in stubs must be exactly what `make protos` generates from protos/."""

from __future__ import annotations

import filecmp
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "client" / "tuneserve_client" / "proto"


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _generators(root: Path) -> str:
    """Which grpcio-tools and protobuf gencode wrote the stubs under root, as the stubs themselves record it."""
    found = set()
    for path in root.rglob("*_pb2*.py"):
        text = path.read_text()
        grpc = re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'", text, re.MULTILINE)
        protobuf = re.search(r"^# Protobuf Python Version: (\S+)", text, re.MULTILINE)
        found |= {f"grpcio-tools {grpc.group(1)}"} if grpc else set()
        found |= {f"protobuf gencode {protobuf.group(1)}"} if protobuf else set()
    return ", ".join(sorted(found)) or "unknown"


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--out", str(tmp_path)], check=True)
    versions = f"checked-in stubs by {_generators(CHECKED_IN)}; fresh ones by {_generators(tmp_path)}"
    fresh, checked_in = _files(tmp_path), _files(CHECKED_IN)
    assert fresh == checked_in, f"stub files differ from protos/; run `make protos` ({versions})"
    stale = [f for f in sorted(fresh) if not filecmp.cmp(tmp_path / f, CHECKED_IN / f, shallow=False)]
    assert not stale, f"stale generated files {stale}; run `make protos` ({versions})"


def test_stubs_do_not_import_the_server_package() -> None:
    for path in CHECKED_IN.rglob("*.py"):
        text = path.read_text()
        assert "from tuneserve." not in text and "import tuneserve." not in text, path
