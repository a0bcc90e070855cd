"""What hostile inputs cost a server process: the time to its answer, the growth of its memory (RSS) at the peak and
after the answer, and the status it answers with.

    python -m bench.hostile_inputs [--only NAME ...] [--zip-entries N] [--line-mib N] [--csv-rows N]

Each input goes to a fresh `tuneserve serve` process (default settings; the data directory in a temporary folder),
which is sampled every 10 ms (psutil RSS) from just before the call until just after it, then once more 2 s later
(what stays). The inputs (`tests/hostile_files.py` writes the files):
- `zip-directory-bomb`: a zip whose central directory lists --zip-entries records (2,000,000: ~124 MB) all pointing
  at one 1x1 PNG, more than max_dataset_rows;
- `jsonl-long-line`: a JSONL file that is a single --line-mib MiB line (500: just under max_dataset_bytes);
- `csv-tiny-rows`: --csv-rows distinct tiny CSV rows (1,000,000), a dataset the server accepts;
- `oi-long-name`: Open Inference ModelMetadata for a 20,000-character model name;
- `control-char-name`: an upload named with an ANSI escape sequence and a newline.
Prints a Markdown table, one row per input.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil

from bench._common import machine
from tests.hostile_files import directory_bomb, long_line_jsonl, tiny_rows_csv
from tests.integration.server_process import ServerProcess
from tuneserve_client import Client, TuneServeError
from tuneserve_client.proto.inference import grpc_service_pb2, grpc_service_pb2_grpc

MIB = 1 << 20


class _Sampler:
    """Polls a process's RSS from a thread; `peak` is the largest value seen."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def _status(call: Callable[[], object]) -> str:
    try:
        call()
    except TuneServeError as exc:
        return f"{exc.code.name}: {str(exc)[:110]}"
    except grpc.RpcError as exc:
        return f"{exc.code().name}: {(exc.details() or '')[:110]}"
    return "OK"


def _oi_metadata(target: str, name: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelMetadata(grpc_service_pb2.ModelMetadataRequest(name=name), timeout=60)


def measure(tmp: Path, label: str, call: Callable[[str], object]) -> str:
    server = ServerProcess(tmp / label / "data", tmp, TUNESERVE_LOG_LEVEL="WARNING")
    server.data_dir.mkdir(parents=True)
    server.start()
    try:
        time.sleep(1.0)  # let start-up allocations settle
        with _Sampler(server.pid) as sampler:
            started = time.perf_counter()
            status = _status(lambda: call(server.target))
            seconds = time.perf_counter() - started
        time.sleep(2.0)
        after = psutil.Process(server.pid).memory_info().rss
        alive = "" if server.alive else " (server died)"
    finally:
        server.stop()
    return (f"| {label} | {seconds:.2f} s | +{(sampler.peak - sampler.base) / MIB:.0f} MB | "
            f"+{(after - sampler.base) / MIB:.0f} MB | {status}{alive} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="run only these inputs")
    parser.add_argument("--zip-entries", type=int, default=2_000_000)
    parser.add_argument("--line-mib", type=int, default=500)
    parser.add_argument("--csv-rows", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hostile-") as name:
        tmp = Path(name)

        def upload(path: Path, dataset_name: str | None = None) -> Callable[[str], object]:
            def call(target: str) -> object:
                with Client(target, timeout=600) as client:
                    return client.upload_dataset(path, name=dataset_name)
            return call

        inputs: dict[str, Callable[[], Callable[[str], object]]] = {
            "zip-directory-bomb": lambda: upload(directory_bomb(tmp / "bomb.zip", args.zip_entries)),
            "jsonl-long-line": lambda: upload(long_line_jsonl(tmp / "line.jsonl", args.line_mib * MIB)),
            "csv-tiny-rows": lambda: upload(tiny_rows_csv(tmp / "rows.csv", args.csv_rows)),
            "oi-long-name": lambda: lambda target: _oi_metadata(target, "m" * 20_000),
            "control-char-name": lambda: upload(tiny_rows_csv(tmp / "small.csv", 10), "x\x1b[2J\x1b[31mred\n.csv"),
        }
        print(f"machine: {machine()}")
        print("| input | time to the answer | peak RSS growth | RSS growth 2 s later | status |")
        print("|---|---|---|---|---|")
        for label, build in inputs.items():
            if args.only and label not in args.only:
                continue
            call = build()
            print(measure(tmp, label, call), flush=True)
            for leftover in tmp.glob("*.*"):
                leftover.unlink()


if __name__ == "__main__":
    main()
