"""Hostile Predict and UploadDataset requests against a `tuneserve serve` process (issue 16, items 4 and 5): what
each costs the server (wall time, CPU time, peak resident memory growth, temp files, file descriptors) and what the
caller gets.

    python -m bench.hostile_requests                       # every case, on a freshly trained tiny model
    python -m bench.hostile_requests --cases predict       # only the Predict cases
    python -m bench.hostile_requests --streams 50          # fewer stalled uploads

Cases:
- `predict`: one Predict of 256 texts of 100,000 characters (the most `max_predict_batch` x `max_text_chars` allow,
  to the lowest role), no deadline.
- `deadline`: the same with a 1 s deadline: when the caller gets its status, and how much CPU the server still burns
  after the deadline (sampled until it stays flat for 0.5 s).
- `deadline-uncut`: `deadline` on a server that does not cut texts (limits.max_chars_per_token = 1,000,000), so the
  work left at the deadline is the whole tokenization: what stops it is the cancellation alone.
- `uploads`: `--streams` UploadDataset streams that send their metadata and one 1 MiB chunk and then stall: how many
  are refused, the temp bytes and file descriptors the server holds, and again after the idle timeout.

The model is the tiny text model (tests/tiny_model.py's: 2-layer, hidden-32 BERT with MiniLM's tokenizer) trained
with max_seq_length 128 (the product's default): tokenizing dominates, as it does for any model. Each case runs on a
server started afresh (ORT with 1 intra-op thread, no spinning, so CPU time is the work done). Prints one JSON line
per case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import psutil

from tests.fixtures import build_tiny_bert, write_text_dataset
from tests.integration.server_process import ServerProcess
from tests.tiny_model import COUNTS, STEPS
from tuneserve_client import Client, JobState, TuneServeError
from tuneserve_client.proto.tuneserve.v1 import datasets_pb2, datasets_pb2_grpc

HUGE_TEXT_CHARS = 100_000
HUGE_TEXTS = 256
MIB = 1024 * 1024
# The server settings every case runs with: CPU time = work done (no ORT spinning).
SERVER_ENV = {"TUNESERVE_INFERENCE__INTRA_OP_THREADS": "1", "TUNESERVE_INFERENCE__INTRA_OP_SPINNING": "false"}


def huge_texts(count: int = HUGE_TEXTS, chars: int = HUGE_TEXT_CHARS) -> list[str]:
    """`count` distinct texts of exactly `chars` characters of ordinary words."""
    words = ["the", "market", "rallied", "after", "the", "report", "said", "people", "spent", "more", "on", "new",
             "phones", "this", "year"]
    texts = []
    for i in range(count):
        body = " ".join(words[(i + j) % len(words)] for j in range(chars // 4))
        texts.append((f"{i} " + body)[:chars].ljust(chars, "x"))
    return texts


def train_model(server: ServerProcess, root: Path, backbone: Path, max_seq_length: int = 128) -> str:
    """Fine-tune the tiny backbone with `max_seq_length` on the server: the model id."""
    with Client(server.target, timeout=60) as client:
        dataset = client.upload_dataset(write_text_dataset(root / "train.jsonl", COUNTS, seed=1))
        hyperparameters = {**STEPS, "max_seq_length": max_seq_length}
        job = client.fine_tune(dataset.id, backbone=str(backbone), model_name="hostile", hyperparameters=hyperparameters)
        done = client.wait_for_job(job.id, timeout=600)
        if done.state != JobState.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"fine-tune failed: {done.error}")
        return done.model_id


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class RssSampler:
    """The peak resident memory of a process, sampled every `interval` seconds while the block runs."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.start = self.peak = int(self._process.memory_info().rss)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.peak = max(self.peak, int(self._process.memory_info().rss))
            except psutil.Error:
                return

    @contextmanager
    def sampling(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    @property
    def growth_mib(self) -> float:
        return round((self.peak - self.start) / MIB, 1)


def wait_cpu_flat(pid: int, *, flat_for: float = 0.5, below: float = 0.05, timeout: float = 60.0) -> float:
    """Sample the process's CPU time until it grows by less than `below` seconds over `flat_for` seconds: when it
    went flat (time.monotonic())."""
    last, last_at = cpu_seconds(pid), time.monotonic()
    end = last_at + timeout
    while time.monotonic() < end:
        time.sleep(flat_for)
        now, now_at = cpu_seconds(pid), time.monotonic()
        if now - last < below:
            return last_at
        last, last_at = now, now_at
    return time.monotonic()


@dataclass
class PredictCase:
    case: str
    texts: int
    chars_per_text: int
    deadline_s: float | None
    status: str
    answered_after_s: float
    server_cpu_s: float              # CPU the server used from the call's start until it went flat
    cpu_after_answer_s: float        # ... of which after the caller had its answer
    busy_after_answer_s: float       # how long after the answer the server's CPU went flat
    rss_peak_growth_mib: float
    rss_after_mib: float             # growth that stays 2 s after the call (vs before it)


def predict_case(server: ServerProcess, model_id: str, texts: list[str], deadline: float | None) -> PredictCase:
    pid = server.pid
    with Client(server.target, timeout=60) as warm:
        warm.predict(model_id, ["warm up the session"])
    with Client(server.target, timeout=deadline or 300) as client:
        client.list_models(page_size=1)   # the channel is connected
        sampler = RssSampler(pid)
        cpu_start, started = cpu_seconds(pid), time.monotonic()
        with sampler.sampling():
            try:
                client.predict(model_id, texts)
                status = "OK"
            except TuneServeError as exc:
                status = f"{type(exc).__name__}: {exc}"[:160]
            answered = time.monotonic()
            cpu_answered = cpu_seconds(pid)
            flat_at = wait_cpu_flat(pid)
        cpu_end = cpu_seconds(pid)
        time.sleep(2)
        rss_after = server.rss_bytes()
    return PredictCase(
        case="predict" if deadline is None else "deadline", texts=len(texts), chars_per_text=len(texts[0]),
        deadline_s=deadline, status=status, answered_after_s=round(answered - started, 2),
        server_cpu_s=round(cpu_end - cpu_start, 2), cpu_after_answer_s=round(max(0.0, cpu_end - cpu_answered), 2),
        busy_after_answer_s=round(max(0.0, flat_at - answered), 2), rss_peak_growth_mib=sampler.growth_mib,
        rss_after_mib=round((rss_after - sampler.start) / MIB, 1),
    )


@dataclass
class StalledUploads:
    """What `streams` stalled uploads cost: statuses (OK = still open) and the server's temp bytes and fds."""

    statuses: dict[str, int]
    temp_mib: float
    fds: int


@dataclass
class UploadCase:
    case: str
    streams: int
    chunk_mib: float
    fds_before: int
    while_stalled: StalledUploads
    after_idle_wait: StalledUploads | None
    idle_wait_s: float


def temp_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "tmp").rglob("*") if p.is_file())


class Stalls:
    """`count` UploadDataset streams on one channel that send metadata and one chunk, then stall until `release()`."""

    def __init__(self, target: str, count: int, chunk_bytes: int = MIB) -> None:
        self._target = target
        self._count = count
        self._chunk = b"text,label\n" + b"x" * (chunk_bytes - 11)
        self.sent = 0
        self.results: list[str | None] = [None] * count   # status code name; None while the stream is open
        self.details: list[str] = [""] * count

    async def run(self, released: asyncio.Event) -> None:
        async with grpc.aio.insecure_channel(self._target) as channel:
            stub = datasets_pb2_grpc.DatasetServiceStub(channel)
            await asyncio.gather(*(self._one(stub, i, released) for i in range(self._count)))

    async def _one(self, stub: datasets_pb2_grpc.DatasetServiceStub, index: int, released: asyncio.Event) -> None:
        async def requests() -> AsyncIterator[datasets_pb2.UploadDatasetRequest]:
            metadata = datasets_pb2.DatasetUploadMetadata(name=f"stalled-{index}.csv")
            yield datasets_pb2.UploadDatasetRequest(metadata=metadata)
            yield datasets_pb2.UploadDatasetRequest(chunk=self._chunk)
            self.sent += 1
            await released.wait()

        call = stub.UploadDataset(requests())
        try:
            await call
            self.results[index] = "OK (finished)"
        except grpc.aio.AioRpcError as exc:
            self.details[index] = exc.details() or ""
            self.results[index] = exc.code().name

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            key = result or "open"
            counts[key] = counts.get(key, 0) + 1
        return counts


@contextmanager
def stalled_uploads(target: str, count: int, chunk_bytes: int = MIB) -> Iterator[Stalls]:
    """Run `count` stalled uploads on a background loop for the block; they are released (ended) after it."""
    stalls = Stalls(target, count, chunk_bytes)
    loop = asyncio.new_event_loop()
    released = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(stalls.run(released)), daemon=True)
    thread.start()
    try:
        yield stalls
    finally:
        loop.call_soon_threadsafe(released.set)
        thread.join(30)
        loop.close()


def upload_case(server: ServerProcess, streams: int, idle_wait: float) -> UploadCase:
    pid = server.pid
    fds_before = psutil.Process(pid).num_fds()

    def snapshot(stalls: Stalls) -> StalledUploads:
        return StalledUploads(stalls.statuses(), round(temp_bytes(server.data_dir) / MIB, 1),
                              psutil.Process(pid).num_fds())

    with stalled_uploads(server.target, streams) as stalls:
        deadline = time.monotonic() + 60
        # every stream sent its chunk or ended; then give the server a moment to write what it got
        while stalls.sent + sum(r is not None for r in stalls.results) < streams and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        during = snapshot(stalls)
        after = None
        if idle_wait:
            time.sleep(idle_wait)
            after = snapshot(stalls)
    return UploadCase("uploads", streams, 1.0, fds_before, during, after, idle_wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="predict,deadline,deadline-uncut,uploads",
                        help="comma-separated: predict,deadline,deadline-uncut,uploads")
    parser.add_argument("--streams", type=int, default=200, help="stalled uploads (case uploads)")
    parser.add_argument("--idle-wait", type=float, default=0.0,
                        help="uploads: also measure this long after the stall (default: the idle timeout + 5 s)")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    with tempfile.TemporaryDirectory(prefix="tuneserve-hostile-") as tmp:
        root = Path(tmp)
        backbone = build_tiny_bert(root / "backbones" / "tiny-bert")
        server = ServerProcess(root / "data", backbone.parent, **SERVER_ENV)
        model_id = ""
        if cases & {"predict", "deadline", "deadline-uncut"}:
            server.start()
            try:
                model_id = train_model(server, root, backbone)
            finally:
                server.stop()
        texts = huge_texts()
        for case, deadline, env in (("predict", None, {}), ("deadline", 1.0, {}),
                                    ("deadline-uncut", 1.0, {"TUNESERVE_LIMITS__MAX_CHARS_PER_TOKEN": "1000000"})):
            if case in cases:
                server.start(**env)
                try:
                    report = predict_case(server, model_id, texts, deadline)
                    report.case = case
                    print(json.dumps(asdict(report)), flush=True)
                finally:
                    server.stop()
        if "uploads" in cases:
            from tuneserve.settings import LimitSettings

            idle = getattr(LimitSettings(), "upload_idle_timeout_seconds", 0.0)
            server.start()
            try:
                report = upload_case(server, args.streams, args.idle_wait or (idle + 5 if idle else 10.0))
                print(json.dumps(asdict(report)), flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
