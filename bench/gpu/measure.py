"""Measurements for bench/gpu/check.py: timing loops, the training worker run, and the inference comparisons.

Every function returns a plain dict for the JSON summary; the heavy imports happen inside them, so that a missing
package fails one measurement (reported) rather than the whole check.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneserve.cpus import available_cpus  # standard library only: fine on the device


def timed(
    fn: Callable[[], Any],
    *,
    batch: int,
    budget_s: float,
    min_iters: int = 5,
    max_iters: int = 300,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
    unit: str = "texts",
) -> dict[str, Any]:
    """Per-call wall times (synchronised when `sync` is given) until the budget is spent: p50/p99 ms, `unit`/s."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - started < budget_s):
        begin = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - begin)
    ordered = sorted(times)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {
        "batch": batch,
        "n": len(times),
        "p50_ms": round(p50 * 1e3, 3),
        "p99_ms": round(p99 * 1e3, 3),
        "mean_ms": round(statistics.fmean(times) * 1e3, 3),
        f"{unit}_per_s": round(batch / p50, 1),
    }


# --------------------------------------------------------------------------------------------------- training worker


def run_worker(spec_path: Path, *, env: dict[str, str], timeout_s: float, log_path: Path) -> dict[str, Any]:
    """Run `python -m tuneserve.engines.training.worker SPEC` as the job manager does; collect its events."""
    events: list[dict[str, Any]] = []
    started = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuneserve.engines.training.worker", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            text=True,
        )
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                events.append(event)
                if event.get("kind") in ("evaluation", "export", "result", "failed"):
                    print(f"  worker {event['kind']}: {event.get('message') or event.get('reason', '')}", flush=True)
            code = proc.wait()
        finally:
            timed_out = not timer.is_alive() and proc.returncode not in (0, 1)
            timer.cancel()
    wall = time.perf_counter() - started
    return summarise_events(events, code, wall, timed_out, log_path)


def summarise_events(
    events: list[dict[str, Any]], code: int, wall: float, timed_out: bool, log_path: Path
) -> dict[str, Any]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_kind.setdefault(event.get("kind", "?"), []).append(event)
    result = (by_kind.get("result") or [None])[-1]
    export = (by_kind.get("export") or [None])[-1]
    failed = (by_kind.get("failed") or [None])[-1]
    # NOTE: the first logging window holds CUDA/cuBLAS start-up and the warm-up steps; later windows are steady.
    rates = [e["samples_per_second"] for e in by_kind.get("progress", [])[1:] if e.get("samples_per_second")]
    out: dict[str, Any] = {
        "exit_code": code,
        "timed_out": timed_out,
        "worker_wall_s": round(wall, 1),
        "events": {kind: len(items) for kind, items in by_kind.items()},
        "steady_samples_per_s": round(statistics.median(rates), 1) if rates else None,
    }
    if result:
        out |= {
            "device": result.get("device"),
            "precision": result.get("precision"),
            "train_seconds": round(float(result.get("train_seconds", 0.0)), 2),
            "trainer_samples_per_s": round(float(result.get("samples_per_second", 0.0)), 1),
            "validation_metrics": result.get("validation_metrics"),
            "final_train_loss": result.get("final_train_loss"),
            "best_step": result.get("best_step"),
            "refit_members": result.get("refit_members", 0),
            "refit_temperature": (result.get("calibration") or {}).get("refit_temperature", []),
            "temperature": (result.get("calibration") or {}).get("temperature", []),
        }
    if export:
        out |= {
            "export_ok": True,
            "parity_max_abs_diff": export.get("parity_max_abs_diff"),
            "parity_examples": export.get("parity_examples"),
            "onnx_size_mb": round(export.get("size_bytes", 0) / 1e6, 1),
        }
    if failed:
        out["failed_reason"] = failed.get("reason")
    if code != 0 or not result:
        out["stderr_tail"] = log_path.read_text(errors="replace")[-3000:]
    return out


# ------------------------------------------------------------------------------------------- in-process measurements


def export_untrained(backbone: Path, version_dir: Path, labels: list[str], texts: list[str]) -> dict[str, Any]:
    """When the worker could not run (a package it needs is missing, or it failed): a model version of the untrained
    backbone + head, through the same artifact writer and ONNX export (with parity), so inference is still timed."""
    import shutil

    from transformers import AutoTokenizer

    from tuneserve.engines.export.text import export_onnx
    from tuneserve.engines.training.artifacts import write_model_artifacts
    from tuneserve.engines.training.model import TextClassifier

    shutil.rmtree(version_dir, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    model = TextClassifier.from_backbone(str(backbone), len(labels), dropout=0.1)
    input_names = model.input_names(tokenizer)
    write_model_artifacts(version_dir, model, tokenizer, labels=labels, input_names=input_names, max_seq_length=128)
    report = export_onnx(model, tokenizer, version_dir / "model.onnx", example_texts=texts, max_seq_length=128)
    return {
        "note": "untrained weights: latency is representative, predictions are not",
        "parity_max_abs_diff": report.parity.max_abs_diff,
        "parity_examples": report.parity.examples,
        "onnx_size_mb": round(report.size_bytes / 1e6, 1),
    }


def optimizer_step(loss_of: Callable[[], Any], optimizer: Any, *, device: str, precision: str) -> Callable[[], None]:
    """One training step as the Trainer takes it: forward under the precision's autocast, backward (through a
    GradScaler for fp16), optimizer step."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device) if precision == "fp16" else None  # type: ignore[attr-defined]

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_of()
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def train_step_throughput(
    backbone: Path, *, device: str, batch: int, seq: int, steps: int, warmup: int = 2
) -> dict[str, Any]:
    """The bare training step the Trainer wraps (forward, loss, backward, AdamW) on the same model and shape,
    under the precision the worker would choose: samples/s without evaluation, logging and checkpoints."""
    import torch

    from tuneserve.engines.training.model import TextClassifier

    try:
        from tuneserve.engines.training.trainer import choose_device

        precision = choose_device("cuda" if device == "cuda" else "cpu").precision
    except ImportError:  # trainer.py needs scikit-learn: its rule, restated
        precision = "fp32" if device != "cuda" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    model = TextClassifier.from_backbone(str(backbone), 4, dropout=0.1).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (batch, seq), generator=generator).to(device)
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    labels = torch.randint(0, 4, (batch,), generator=generator).to(device)
    step = optimizer_step(lambda: model(ids, mask, types, labels=labels).loss, optimizer, device=device,
                          precision=precision)
    sync = torch.cuda.synchronize if device == "cuda" else None
    stats = timed(step, batch=batch, budget_s=0.0, min_iters=steps, max_iters=steps, warmup=warmup, sync=sync)
    return {"precision": precision, "seq": seq, **stats, "samples_per_s": stats["texts_per_s"]}


def ort_inference(
    version_dir: Path,
    texts: list[str],
    *,
    providers: tuple[str, ...],
    batches: tuple[int, ...],
    budget_s: float,
    min_iters: int = 5,
    warmup: int = 2,
) -> dict[str, Any]:
    """OnnxTextClassifier.run() (pad + session + softmax, pre-tokenized) per batch size; `provider` is the truth."""
    from tuneserve.engines.runtime import OnnxTextClassifier, RuntimeOptions

    started = time.perf_counter()
    runtime = OnnxTextClassifier(version_dir, RuntimeOptions(intra_op_threads=available_cpus(), providers=providers))
    out: dict[str, Any] = {
        "requested": list(providers),
        "provider": runtime.provider,
        "load_and_warmup_s": round(time.perf_counter() - started, 2),
        "intra_op_threads": available_cpus(),
    }
    if providers[0] != "CPUExecutionProvider" and runtime.provider != providers[0]:
        out["skipped"] = f"session fell back to {runtime.provider}; measured in the CPU-only run instead"
        runtime.close()
        return out
    for batch in batches:
        features = runtime.encode(texts[:batch])
        out[f"b{batch}"] = timed(
            lambda f=features: runtime.run(f), batch=batch, budget_s=budget_s, min_iters=min_iters, warmup=warmup
        )
        out[f"b{batch}"]["tokens_per_text"] = max(f.length for f in features)
    runtime.close()
    return out


def torch_inference(
    version_dir: Path,
    texts: list[str],
    *,
    device: str,
    batches: tuple[int, ...],
    budget_s: float,
    min_iters: int = 5,
    warmup: int = 2,
) -> dict[str, Any]:
    """PyTorch eager from the checkpoint dir, fp32 and bf16 autocast: host ids in, probabilities back on the host
    (the same boundary as OnnxTextClassifier.run)."""
    import json as _json

    from transformers import AutoTokenizer

    from tuneserve.engines.training.model import TextClassifier

    prep = _json.loads((version_dir / "preprocessing.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(version_dir / prep["tokenizer"]))
    model = TextClassifier.from_checkpoint(version_dir / "checkpoint").to(device).eval()
    names = prep["input_names"]

    def host_inputs(batch: int) -> list[Any]:
        encoded = tokenizer(
            texts[:batch], padding=True, truncation=True, max_length=prep["max_seq_length"], return_tensors="np"
        )
        return [encoded[name] for name in names]

    return eager_inference(
        model, host_inputs, device=device, batches=batches, budget_s=budget_s, min_iters=min_iters, warmup=warmup
    )


def eager_inference(
    model: Any,
    host_inputs: Callable[[int], list[Any]],
    *,
    device: str,
    batches: tuple[int, ...],
    budget_s: float,
    min_iters: int,
    warmup: int,
    unit: str = "texts",
) -> dict[str, Any]:
    """`model` (on `device`, in eval mode) in fp32 and in bf16 autocast at each batch size: the host arrays
    `host_inputs(batch)` in, positional, and probabilities back on the host."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else None
    out: dict[str, Any] = {"device": device}
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
            out[precision] = {"skipped": "GPU has no bf16"}
            continue
        results: dict[str, Any] = {}
        for batch in batches:
            host = host_inputs(batch)

            def forward(host: list[Any] = host, precision: str = precision) -> None:
                with torch.inference_mode(), torch.autocast(
                    device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"
                ):
                    feeds = [torch.from_numpy(array).to(device) for array in host]
                    torch.softmax(model(*feeds).logits.float(), dim=-1).cpu()

            results[f"b{batch}"] = timed(
                forward, batch=batch, budget_s=budget_s, min_iters=min_iters, warmup=warmup, sync=sync, unit=unit
            )
        out[precision] = results
    return out
