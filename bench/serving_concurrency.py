"""Predict through the service at concurrency 1, 8 and 32 (dynamic batching at work), beside the in-process ceiling
(tokenize + ONNX Runtime at batch 1, 8 and 32) measured in the same run.

    python -m bench.serving_concurrency --data-dir DIR --model-id ID      # a data dir holding a READY model
    python -m bench.serving_concurrency ... --batching-delay-ms 2          # TUNESERVE_BATCHING__MAX_QUEUE_DELAY_MS
    python -m bench.serving_concurrency ... --intra-op-spinning off        # TUNESERVE_INFERENCE__INTRA_OP_SPINNING

Each request carries one BBC held-out document. A cycle measures the service at every concurrency level, then the
in-process ceiling; cycles repeat (`--cycles`, default 3) so that the two sides alternate and drift in outside load
falls on both. Prints one JSON line per measurement, then the medians over the cycles: p50/p99 ms and texts/s per
level, the ceiling per batch size, and two ratios taken within each cycle: `throughput_vs_ceiling` (the service at
the highest concurrency over the best in-process batch) and `batch1_p50_vs_in_process` (concurrency 1 over batch 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from bench._common import bbc_news, machine, server, split
from tuneserve.cpus import available_cpus
from tuneserve.engines.runtime import OnnxTextClassifier, RuntimeOptions
from tuneserve_client import AsyncClient, Client

CEILING_BATCHES = (1, 8, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--requests", type=int, default=320, help="requests per concurrency level and cycle")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--cycles", type=int, default=3, help="service + in-process measurements, alternating")
    parser.add_argument("--batching-delay-ms", type=float, default=0.0)
    parser.add_argument("--intra-op-spinning", choices=("on", "off"), default="on",
                        help="inference.intra_op_spinning, for the server and the in-process ceiling alike")
    args = parser.parse_args()
    spinning = args.intra_op_spinning == "on"

    _, test = split(bbc_news())
    texts = [text for text, _ in test[:64]]
    print(json.dumps({"machine": machine(), "intra_op_spinning": args.intra_op_spinning}))
    env = {
        "TUNESERVE_BATCHING__MAX_QUEUE_DELAY_MS": str(args.batching_delay_ms),
        "TUNESERVE_INFERENCE__INTRA_OP_SPINNING": str(spinning).lower(),
    }
    service: dict[int, list[dict[str, float]]] = {c: [] for c in args.concurrency}
    ceiling: dict[int, list[dict[str, float]]] = {b: [] for b in CEILING_BATCHES}
    throughput_ratios, batch1_ratios = [], []
    with server(args.data_dir, env=env) as target:
        with Client(target) as client:
            model = client.load_model(args.model_id)
        version_dir = args.data_dir / "models" / args.model_id / str(model.latest_version)
        runtime = OnnxTextClassifier(version_dir, RuntimeOptions(available_cpus(), intra_op_spinning=spinning))
        for cycle in range(args.cycles):
            for concurrency in args.concurrency:
                figures = asyncio.run(_through_service(target, args.model_id, texts, concurrency, args.requests))
                service[concurrency].append(figures)
                print(json.dumps({"cycle": cycle, "concurrency": concurrency, **figures}))
            in_process = _in_process(runtime, texts)
            for batch, figures in in_process.items():
                ceiling[batch].append(figures)
            print(json.dumps({"cycle": cycle, "in_process": in_process}))
            best = max(f["texts_per_s"] for f in in_process.values())
            throughput_ratios.append(service[max(args.concurrency)][-1]["texts_per_s"] / best)
            batch1_ratios.append(service[min(args.concurrency)][-1]["p50_ms"] / in_process[1]["p50_ms"])
    print(json.dumps({
        "medians_over_cycles": {
            "service": {c: _medians(runs) for c, runs in service.items()},
            "in_process": {b: _medians(runs) for b, runs in ceiling.items()},
        },
        "throughput_vs_ceiling": round(statistics.median(throughput_ratios), 3),
        "throughput_vs_ceiling_per_cycle": [round(r, 3) for r in throughput_ratios],
        "batch1_p50_vs_in_process": round(statistics.median(batch1_ratios), 3),
        "batch1_p50_vs_in_process_per_cycle": [round(r, 3) for r in batch1_ratios],
    }))


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


async def _through_service(target: str, model_id: str, texts: list[str], concurrency: int, n: int) -> dict[str, float]:
    latencies: list[float] = []
    async with AsyncClient(target) as client:
        for text in texts[:16]:  # warm up
            await client.predict(model_id, [text])
        counter = iter(range(n))

        async def caller() -> None:
            for i in counter:
                started = time.perf_counter()
                await client.predict(model_id, [texts[i % len(texts)]])
                latencies.append((time.perf_counter() - started) * 1e3)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99), "texts_per_s": round(n / wall, 1)}


def _in_process(runtime: OnnxTextClassifier, texts: list[str]) -> dict[int, dict[str, float]]:
    figures = {}
    for batch in CEILING_BATCHES:
        runtime.predict(texts[:batch])  # lets the service's threads settle
        latencies, done = [], 0
        started = time.perf_counter()
        for i in range(max(8, 320 // batch)):
            chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
            t0 = time.perf_counter()
            runtime.predict(chunk)
            latencies.append((time.perf_counter() - t0) * 1e3)
            done += batch
        wall = time.perf_counter() - started
        figures[batch] = {"p50_ms": _pct(latencies, 50), "texts_per_s": round(done / wall, 1)}
    return figures


def _pct(samples: list[float], q: int) -> float:
    return round(statistics.quantiles(samples, n=100)[q - 1], 3)


if __name__ == "__main__":
    main()
