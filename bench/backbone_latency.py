"""Forward latency on CPU of each available catalog backbone, written to the packaged file that `ListBackbones` reads
(service/tuneserve/engines/backbone_latency.json), so that the serving process neither imports torch nor spends
start-up time measuring:

    python -m bench.backbone_latency [--threads N] [--runs N] [--only NAME ...] [--dry-run]

What is timed: the backbone alone (no head), PyTorch eager under torch.inference_mode(), batch 1, at its own input
size: 128 tokens for text (the padded input the tokenizer makes, capped at the backbone's longest input), the
pretraining resolution for vision (224/240/260 px for EfficientNet-Lite0/1/2), with N torch threads (default 1: the
figure then compares backbones rather than machines' core counts). After warm-up calls, every round times each
backbone once (interleaved, so that load from other processes hits all alike).

Which clock: with 1 thread every forward runs in the calling thread, so its thread CPU time is the latency on an idle
core and does not grow when other processes share the CPUs (wall-clock time on a loaded machine does, several-fold).
The served figure (`p50_ms`) is then the median thread CPU time; with more threads (the pool's work is not the
caller's CPU time) it is the median wall-clock time. The file keeps both medians, the p90 of the served clock and
what it was measured on. Backbones not measured in this run keep their previous entry.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from bench._common import machine
from tuneserve.engines.backbones import LATENCY_FILE, list_backbones, resolve_backbone

TEXT_TOKENS = 128
WARMUP_CALLS = 5


def text_forward(path: str, max_length: int) -> tuple[Callable[[], object], str]:
    from transformers import AutoModel, AutoTokenizer

    tokens = min(TEXT_TOKENS, max_length) if max_length else TEXT_TOKENS
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    # NOTE: a long text truncated to exactly `tokens` tokens ([CLS] ... [SEP]), as the tokenizer cuts a long input.
    text = " ".join(["the match ended in a late goal"] * TEXT_TOKENS)
    inputs = tokenizer(text, truncation=True, max_length=tokens, return_tensors="pt")
    assert inputs["input_ids"].shape == (1, tokens)
    return (lambda: model(**inputs)), f"{tokens} tokens"


def image_forward(path: str) -> tuple[Callable[[], object], str]:
    from tuneserve.engines.training import vision

    model, config = vision.load_backbone(path, pretrained=True)
    model.eval()
    size = vision.image_size(config)
    pixels = torch.randn(1, 3, size, size)  # NOTE: a CNN's latency does not depend on the pixel values
    return (lambda: model(pixels)), f"{size}x{size} image"


def measure(forwards: dict[str, Callable[[], object]], runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per backbone: (wall-clock ms, thread CPU ms) of each timed call."""
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in forwards}
    with torch.inference_mode():
        for forward in forwards.values():
            for _ in range(WARMUP_CALLS):
                forward()
        for _ in range(runs):
            for name, forward in forwards.items():
                wall, cpu = time.perf_counter(), time.thread_time()
                forward()
                timings[name][1].append((time.thread_time() - cpu) * 1e3)
                timings[name][0].append((time.perf_counter() - wall) * 1e3)
    return timings


def entry(wall: list[float], cpu: list[float], threads: int) -> dict[str, object]:
    served, clock = (cpu, "thread CPU time") if threads == 1 else (wall, "wall clock")
    return {
        "p50_ms": round(statistics.median(served), 2),
        "p90_ms": round(float(np.percentile(served, 90)), 2),
        "clock": clock,
        "wall_p50_ms": round(statistics.median(wall), 2),
        "cpu_p50_ms": round(statistics.median(cpu), 2),
        "runs": len(wall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per backbone (default 50)")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME", help="measure only these catalog names")
    parser.add_argument("--dry-run", action="store_true", help="print the figures, leave the data file alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    forwards, inputs = {}, {}
    for info in list_backbones():
        if not info.available or (args.only and info.name not in args.only):
            continue
        ref = resolve_backbone(info.name, allowed_dirs=[], allow_hub=False)
        if info.modality == "text":
            forwards[info.name], inputs[info.name] = text_forward(ref.path, info.max_sequence_length)
        else:
            forwards[info.name], inputs[info.name] = image_forward(ref.path)
    if not forwards:
        raise SystemExit("no catalog backbone is installed here: nothing to measure")

    timings = measure(forwards, args.runs)
    where, today = machine(), datetime.date.today().isoformat()
    entries = {
        name: {
            **entry(wall, cpu, args.threads),
            "batch": 1,
            "input": inputs[name],
            "threads": args.threads,
            "runtime": f"PyTorch {torch.__version__.split('+')[0]} eager",
            "machine": where,
            "date": today,
        }
        for name, (wall, cpu) in timings.items()
    }
    for name, e in entries.items():
        print(f"{name:20} p50 {e['p50_ms']:8.2f} ms  p90 {e['p90_ms']:8.2f} ms ({e['clock']}); wall p50 "
              f"{e['wall_p50_ms']:8.2f} ms  ({e['input']}, {args.threads} thread(s), {e['runs']} runs)")  # fmt: skip
    print(f"on {where}; load average {os.getloadavg()[0]:.1f} at the end")
    if args.dry_run:
        return
    previous = json.loads(LATENCY_FILE.read_text()) if LATENCY_FILE.is_file() else {}
    data = {"backbones": {**previous.get("backbones", {}), **entries}}
    LATENCY_FILE.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"wrote {LATENCY_FILE}")


if __name__ == "__main__":
    main()
