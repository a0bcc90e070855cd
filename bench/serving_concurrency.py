"""Predict through the service at concurrency 1, 8 and 32 (dynamic batching at work), beside the in-process ceiling
(tokenize + ONNX Runtime at batch 1, 8 and 32) measured in the same run.

    python bench/serving_concurrency.py --data-dir DIR --model-id ID      # a data dir holding a READY model
    python bench/serving_concurrency.py ... --batching-delay-ms 2          # TUNESERVE_BATCHING__MAX_QUEUE_DELAY_MS

Each request carries one BBC held-out document. Prints one JSON line per concurrency level (p50/p99 ms, texts/s) and
the in-process figures; `throughput_vs_ceiling` compares the service at concurrency 32 with the best in-process batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from _common import bbc_news, machine, server, split

from tuneserve.cpus import available_cpus
from tuneserve.engines.runtime import OnnxTextClassifier, RuntimeOptions
from tuneserve_client import AsyncClient, Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--requests", type=int, default=320, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batching-delay-ms", type=float, default=0.0)
    parser.add_argument("--intra-op-spinning", choices=("on", "off"), default="on",
                        help="inference.intra_op_spinning, for the server and the in-process ceiling alike")
    args = parser.parse_args()
    spinning = args.intra_op_spinning == "on"

    _, test = split(bbc_news())
    texts = [text for text, _ in test[:64]]
    print(json.dumps({"machine": machine()}))
    env = {
        "TUNESERVE_BATCHING__MAX_QUEUE_DELAY_MS": str(args.batching_delay_ms),
        "TUNESERVE_INFERENCE__INTRA_OP_SPINNING": str(spinning).lower(),
    }
    results = {}
    with server(args.data_dir, env=env) as target:
        with Client(target) as client:
            model = client.load_model(args.model_id)
        version_dir = args.data_dir / "models" / args.model_id / str(model.latest_version)
        for concurrency in args.concurrency:
            results[concurrency] = asyncio.run(_through_service(target, args.model_id, texts, concurrency, args.requests))
            print(json.dumps({"concurrency": concurrency, **results[concurrency]}))
    ceiling = _in_process(version_dir, texts, spinning)
    print(json.dumps({"in_process": ceiling}))
    best = max(c["texts_per_s"] for c in ceiling.values())
    top = results[max(results)]["texts_per_s"]
    print(json.dumps({"throughput_vs_ceiling": round(top / best, 3), "batch1_p50_vs_in_process": round(
        results[min(results)]["p50_ms"] / ceiling["1"]["p50_ms"], 3)}))


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


def _in_process(version_dir: Path, texts: list[str], spinning: bool) -> dict[str, dict[str, float]]:
    runtime = OnnxTextClassifier(version_dir, RuntimeOptions(available_cpus(), intra_op_spinning=spinning))
    figures = {}
    for batch in (1, 8, 32):
        latencies, done = [], 0
        started = time.perf_counter()
        for i in range(max(8, 320 // batch)):
            chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
            t0 = time.perf_counter()
            runtime.predict(chunk)
            latencies.append((time.perf_counter() - t0) * 1e3)
            done += batch
        wall = time.perf_counter() - started
        figures[str(batch)] = {"p50_ms": _pct(latencies, 50), "texts_per_s": round(done / wall, 1)}
    return figures


def _pct(samples: list[float], q: int) -> float:
    return round(statistics.quantiles(samples, n=100)[q - 1], 3)


if __name__ == "__main__":
    main()
