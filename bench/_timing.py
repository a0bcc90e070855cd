"""Timing helpers of the in-process benchmarks: runners taking turns in blocks, p50/p99 and ratios of medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

Feeds = dict[str, np.ndarray]
Runner = Callable[[Feeds], object]


def ort_session(path: str, threads: int, spinning: bool = True) -> ort.InferenceSession:
    # NOTE: the session options the service uses (engines/runtime.py): all graph optimisations, sequential, N threads.
    # With spinning (ORT's default) the pool's threads busy-wait after each run, taking the cores from whatever runs
    # next: in an interleaved comparison, the next backend.
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def ort_runner(path: str, threads: int, spinning: bool = True) -> Runner:
    session = ort_session(path, threads, spinning)
    names = [i.name for i in session.get_inputs()]
    output = session.get_outputs()[0].name
    return lambda feeds: session.run([output], {name: feeds[name] for name in names})


def timed(runners: dict[str, Runner], batches: list[Feeds], rounds: int, block: int = 10) -> dict[str, list[float]]:
    """Milliseconds per call of each runner, `rounds` calls each. The runners take turns in blocks of `block` calls,
    each block after one untimed call, so that load from outside falls on all of them alike.

    NOTE: not call by call: a runtime's threads keep spinning for a while after a call returns (ONNX Runtime's
    intra-op pool unless allow_spinning=0, PyTorch's OpenMP pool), which taxed whichever runner came next; in a
    call-by-call rotation that alone made the runner after eager PyTorch look 1.3x slower than the same graph later
    in the round (bench/RESULTS.md, 2026-11-28).
    """
    for run in runners.values():  # warm-up: first-call allocations, ORT's kernel selection
        for feeds in batches[:3]:
            run(feeds)
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for start in range(0, rounds, block):
        calls = range(start, min(start + block, rounds))
        for name, run in runners.items():
            run(batches[start % len(batches)])  # lets the previous runner's threads settle
            for i in calls:
                feeds = batches[i % len(batches)]
                started = time.perf_counter()
                run(feeds)
                timings[name].append((time.perf_counter() - started) * 1e3)
    return timings


def summarize(timings: dict[str, list[float]], ratios: dict[str, tuple[str, str]]) -> dict[str, float]:
    """p50/p99 of each runner, and each ratio name -> p50 of the first runner / p50 of the second (>1: faster)."""
    out: dict[str, float] = {}
    for name, values in timings.items():
        out[f"{name}_p50_ms"] = round(statistics.median(values), 2)
        out[f"{name}_p99_ms"] = round(float(np.percentile(values, 99)), 2)
    for ratio, (slower, faster) in ratios.items():
        out[ratio] = round(out[f"{slower}_p50_ms"] / out[f"{faster}_p50_ms"], 2)
    return out


def print_batch(title: str, batch: int, rounds: int, summary: dict[str, float], names: list[str]) -> None:
    cells = "  ".join(f"{n} p50 {summary[f'{n}_p50_ms']:.2f} p99 {summary[f'{n}_p99_ms']:.2f}" for n in names)
    ratios = ", ".join(f"{key} {value}x" for key, value in summary.items() if not key.endswith("_ms"))
    print(f"{title} batch {batch:2d} ({rounds} rounds, ms): {cells}  | {ratios}")
