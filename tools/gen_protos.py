"""Generate the Python stubs in client/tuneserve_client/proto from protos/.

    python tools/gen_protos.py            # write the stubs
    python tools/gen_protos.py --out DIR  # write them elsewhere (the drift test compares the two)

protoc writes imports between generated modules from the proto package path (`from tuneserve.v1 import ...`), which
would collide with the server package `tuneserve`; they are rewritten to `tuneserve_client.proto.tuneserve.v1`.
The descriptors keep their proto file names (`tuneserve/v1/*.proto`), as reflection clients expect.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
PACKAGE = "tuneserve_client.proto"
DEFAULT_OUT = ROOT / "client" / "tuneserve_client" / "proto"
# `from tuneserve.v1 import x_pb2` and `import tuneserve.v1.x_pb2` (both forms appear in stubs and .pyi files)
_IMPORT = re.compile(r"^(from|import) (tuneserve|inference)([. ])", re.MULTILINE)


def generate(out: Path) -> None:
    files = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTOS}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    out.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in sorted(out.rglob("*.py*")):
        path.write_text(_IMPORT.sub(rf"\1 {PACKAGE}.\2\3", path.read_text()))
    for d in [out, *[p for p in out.rglob("*") if p.is_dir() and p.name != "__pycache__"]]:
        (d / "__init__.py").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
