"""Soak: concurrent callers Predict through the real client while a fine-tune runs, on a `tuneserve serve` process.

    python -m bench.soak                           # 32 callers for 60 s (after a 5 s warm-up)
    python -m bench.soak --seconds 20 --callers 8
    python -m bench.soak --intra-op-threads 2 --intra-op-spinning off   # what ORT's spinning costs the fine-tune

The model is the tiny text model (2-layer, hidden-32 random-init BERT with MiniLM's tokenizer, trained a few steps on
synthetic topics), so the figures measure the serving path under load (transport, batching, the event loop beside a
training worker), not a large model's compute. Each caller has its own channel and sends batches of 1, 4, 8, 16 or
32 texts (seeded). A long fine-tune of the same backbone trains in its worker process the whole time. Prints one JSON
line: requests and texts served, errors (any status other than OK), p50/p99 latency, throughput, and the server
process's resident memory after the warm-up vs at the end (the rule: growth under 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from tests.fixtures import build_tiny_bert, make_texts, write_text_dataset
from tests.integration.server_process import ServerProcess
from tests.tiny_model import COUNTS, fine_tune_tiny
from tests.tiny_model import STEPS as QUICK
from tuneserve_client import AsyncClient, Client, JobState, TuneServeError

# NOTE: progress is reported every max_steps / 100 steps; 5000 steps outlast the soak on a loaded 2-CPU machine
BACKGROUND = {**QUICK, "max_steps": 5000, "eval_steps": 5000}
BATCH_SIZES = (1, 1, 4, 8, 16, 32)
TEXTS = [text for text, _ in make_texts({"sport": 30, "politics": 30, "tech": 30}, seed=11)]


@dataclass
class Load:
    latencies_ms: list[float] = field(default_factory=list)
    texts: int = 0
    errors: list[str] = field(default_factory=list)
    rss_samples: list[int] = field(default_factory=list)


@dataclass
class SoakReport:
    seconds: float
    callers: int
    requests: int
    texts: int
    errors: int
    error_samples: list[str]
    p50_ms: float
    p99_ms: float
    requests_per_second: float
    texts_per_second: float
    rss_start_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    rss_growth: float            # (end - start) / start
    job_running_throughout: bool
    job_steps_during_soak: int   # as of the job's progress events (one every max_steps / 100 steps)
    worker_cpu_seconds: float    # CPU time the training worker used during the soak


async def drive(server: ServerProcess, model_id: str, seconds: float, callers: int, *, seed: int = 0) -> Load:
    """`callers` concurrent loops of Predict until `seconds` have passed; the server's RSS sampled every second."""
    load = Load()
    deadline = time.monotonic() + seconds

    async def caller(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        async with AsyncClient(server.target, timeout=60) as client:
            while time.monotonic() < deadline:
                batch = rng.sample(TEXTS, rng.choice(BATCH_SIZES))
                started = time.perf_counter()
                try:
                    response = await client.predict(model_id, batch)
                except TuneServeError as exc:
                    load.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                load.latencies_ms.append((time.perf_counter() - started) * 1e3)
                load.texts += len(response.predictions)

    async def sample_rss() -> None:
        while time.monotonic() < deadline:
            load.rss_samples.append(server.rss_bytes())
            await asyncio.sleep(1.0)

    await asyncio.gather(sample_rss(), *(caller(i) for i in range(callers)))
    return load


def soak(server: ServerProcess, model_id: str, dataset_id: str, backbone: str, *, seconds: float, callers: int,
         warmup: float) -> SoakReport:
    """Start a long fine-tune, warm up, then measure `seconds` of load; the fine-tune is cancelled at the end."""
    with Client(server.target, timeout=60) as client:
        job = client.fine_tune(dataset_id, backbone=backbone, model_name="soak-background", hyperparameters=BACKGROUND)
        deadline = time.monotonic() + 180
        while client.get_job(job.id).progress.step < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the background fine-tune made no progress in 180 s")
            time.sleep(0.2)
        asyncio.run(drive(server, model_id, warmup, callers, seed=1))
        rss_start, steps_start = server.rss_bytes(), client.get_job(job.id).progress.step
        workers = server.workers()
        cpu_start = _cpu_seconds(workers)
        started = time.monotonic()
        load = asyncio.run(drive(server, model_id, seconds, callers, seed=2))
        elapsed = time.monotonic() - started
        rss_end, during, cpu_end = server.rss_bytes(), client.get_job(job.id), _cpu_seconds(workers)
        client.cancel_job(job.id)
        client.wait_for_job(job.id, timeout=60)
    latencies = sorted(load.latencies_ms)
    mib = 1024 * 1024
    return SoakReport(
        seconds=round(elapsed, 1), callers=callers, requests=len(latencies), texts=load.texts,
        errors=len(load.errors), error_samples=load.errors[:5],
        p50_ms=round(statistics.median(latencies), 2) if latencies else float("nan"),
        p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2) if latencies else float("nan"),
        requests_per_second=round(len(latencies) / elapsed, 1), texts_per_second=round(load.texts / elapsed, 1),
        rss_start_mib=round(rss_start / mib, 1), rss_end_mib=round(rss_end / mib, 1),
        rss_peak_mib=round(max([rss_end, *load.rss_samples]) / mib, 1),
        rss_growth=round((rss_end - rss_start) / rss_start, 4),
        job_running_throughout=during.state == JobState.JOB_STATE_RUNNING,
        job_steps_during_soak=during.progress.step - steps_start,
        worker_cpu_seconds=round(cpu_end - cpu_start, 1),
    )


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def train_ready_model(server: ServerProcess, train_file: Path, backbone: Path) -> tuple[str, str]:
    """Upload the synthetic topics and fine-tune the tiny model on them: (model id, dataset id)."""
    return fine_tune_tiny(server.target, train_file, backbone, model_name="soak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--intra-op-threads", type=int, default=1, help="the server's ORT threads (spinning needs 2+)")
    parser.add_argument("--intra-op-spinning", choices=("on", "off"), default="on")
    args = parser.parse_args()
    spinning = "true" if args.intra_op_spinning == "on" else "false"
    with tempfile.TemporaryDirectory(prefix="tuneserve-soak-") as tmp:
        root = Path(tmp)
        backbone = build_tiny_bert(root / "backbones" / "tiny-bert")
        train_file = write_text_dataset(root / "train.jsonl", COUNTS, seed=1)
        server = ServerProcess(
            root / "data", backbone.parent, TUNESERVE_INFERENCE__INTRA_OP_THREADS=str(args.intra_op_threads),
            TUNESERVE_INFERENCE__INTRA_OP_SPINNING=spinning,
        ).start()
        try:
            model_id, dataset_id = train_ready_model(server, train_file, backbone)
            report = soak(server, model_id, dataset_id, str(backbone), seconds=args.seconds, callers=args.callers,
                          warmup=args.warmup)
        finally:
            server.stop()
    settings = {"intra_op_threads": args.intra_op_threads, "intra_op_spinning": args.intra_op_spinning}
    print(json.dumps({**settings, **asdict(report)}))


if __name__ == "__main__":
    main()
