"""Batch-1 Predict latency through the service (our client, gRPC on loopback, a server process) vs the same
tokenize + ONNX Runtime work done in-process, in the same run.

    python -m bench.predict_latency                       # trains a quick MiniLM model first (a few steps)
    python -m bench.predict_latency --data-dir DIR --model-id ID   # reuse finetune_bbc.py's model

Both sides use the same ONNX graph, tokenizer, max_seq_length and intra-op thread count, and their calls are
interleaved (service, in-process, service, ...) so that load from other processes hits both alike. Prints p50/p99 in
ms and the ratio service/in-process of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench._common import bbc_news, machine, server, split, write_jsonl
from tuneserve.cpus import available_cpus
from tuneserve.engines.runtime import OnnxTextClassifier, RuntimeOptions
from tuneserve_client import Client, JobState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--model-id")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--intra-op-spinning", choices=("on", "off"), default="on",
                        help="inference.intra_op_spinning, for the server and the in-process side alike")
    args = parser.parse_args()
    spinning = args.intra_op_spinning == "on"

    _, test = split(bbc_news())
    texts = [text for text, _ in test[:50]]
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-latency-")) / "data"
    print(f"machine: {machine()}")
    env = {"TUNESERVE_INFERENCE__INTRA_OP_SPINNING": str(spinning).lower()}
    with server(data_dir, env=env) as target, Client(target) as client:
        model_id = args.model_id or _quick_model(client, test, data_dir.parent)
        model = client.get_model(model_id)
        version_dir = data_dir / "models" / model_id / str(model.latest_version)
        client.predict(model_id, texts[:1])  # load the session
        provider = client.get_model(model_id).versions[-1].execution_provider
        runtime = OnnxTextClassifier(version_dir, RuntimeOptions(available_cpus(), intra_op_spinning=spinning))
        service, in_process = _interleaved(
            lambda i: client.predict(model_id, [texts[i % len(texts)]]),
            lambda i: runtime.predict([texts[i % len(texts)]]),
            args.requests,
        )
    figures = {
        "requests": args.requests, "provider": provider, "threads": available_cpus(),
        "spinning": args.intra_op_spinning,
        "service_p50_ms": _pct(service, 50), "service_p99_ms": _pct(service, 99),
        "in_process_p50_ms": _pct(in_process, 50), "in_process_p99_ms": _pct(in_process, 99),
        "ratio_p50": round(statistics.median(service) / statistics.median(in_process), 3),
    }
    print(json.dumps(figures))


def _quick_model(client: Client, rows: list[tuple[str, str]], work: Path) -> str:
    dataset = client.upload_dataset(write_jsonl(work / "bbc_small.jsonl", rows))
    job = client.fine_tune(dataset.id, model_name="latency-bench", hyperparameters={"max_steps": 10})
    job = client.wait_for_job(job.id)
    if job.state != JobState.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"quick fine-tune failed: {job.error}")
    return job.model_id


def _interleaved(
    first: Callable[[int], object], second: Callable[[int], object], n: int
) -> tuple[list[float], list[float]]:
    for i in range(20):
        first(i)
        second(i)
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(n):
        for call, out in ((first, samples[0]), (second, samples[1])):
            started = time.perf_counter()
            call(i)
            out.append((time.perf_counter() - started) * 1e3)
    return samples


def _pct(samples: list[float], q: int) -> float:
    return round(statistics.quantiles(samples, n=100)[q - 1] if q < 100 else max(samples), 3)


if __name__ == "__main__":
    main()
