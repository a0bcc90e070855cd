"""`tuneserve jobs report ID [--out FILE] [--dataset ID]`: gathers a succeeded job, its events, its backbone's catalog
entry and (with --dataset) an Evaluate of its model beside its baselines, and writes `_report`'s HTML page.

A job that has not succeeded (queued, running, failed, cancelled) gets no report: it has no kept checkpoint, export
or verdicts to show, and a half-filled page would read as a finished one. The command says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tuneserve_client._exceptions import NotFound
from tuneserve_client.cli.report import html as report
from tuneserve_client.proto.tuneserve.v1.common_pb2 import TASK_MULTI_LABEL
from tuneserve_client.proto.tuneserve.v1.models_pb2 import EvaluateResponse, Model
from tuneserve_client.proto.tuneserve.v1.training_pb2 import Backbone, Job, JobState

if TYPE_CHECKING:
    from tuneserve_client._sync import Client
    from tuneserve_client.cli.common import Output


def add_report_command(
    jobs: argparse._SubParsersAction[argparse.ArgumentParser], command: Callable[..., argparse.ArgumentParser]
) -> None:
    """Adds `report` to `tuneserve jobs`; `command` is `_cli_common.command` (adds a parser bound to a handler)."""
    parser = command(
        jobs, "report", jobs_report, "write one self-contained HTML report of a succeeded fine-tune (needs matplotlib)"
    )
    parser.add_argument("id", metavar="ID")
    parser.add_argument("--out", metavar="FILE", help="where to write it (default: report-ID.html here)")
    parser.add_argument(
        "--dataset",
        default="",
        metavar="ID",
        help="also evaluate the model, side by side with the job's baselines, on this (test) dataset",
    )


def jobs_report(client: Client, args: argparse.Namespace, out: Output) -> int:
    try:
        report.require_matplotlib()
    except ImportError as exc:
        out.error(str(exc))
        return 1
    job = client.get_job(args.id)
    if job.state != JobState.JOB_STATE_SUCCEEDED:
        state = JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
        reason = f" ({job.error})" if job.error else ""
        out.error(
            f"error: job {job.id} is {state}{reason}; a report needs a succeeded job "
            f"(follow it with: tuneserve jobs watch {job.id})"
        )
        return 2
    data = report.ReportInput(job=job, events=list(client.watch_job(job.id)))
    data.backbone = _catalog_entry(client, job)
    if job.task == TASK_MULTI_LABEL:
        data.model = _model(client, job, data.notes)
    if args.dataset:
        data.evaluation = _evaluate(client, job, args.dataset, data.notes)
    path = Path(args.out or f"report-{job.id}.html")
    _write_atomically(path, report.render_html(data))
    if out.json:
        print(json.dumps({"job_id": job.id, "path": str(path)}), file=sys.stdout, flush=True)
    else:
        out.note(f"wrote the report of job {job.id} to {path}")
    return 0


def _catalog_entry(client: Client, job: Job) -> Backbone | None:
    return next((b for b in client.list_backbones().backbones if b.name == job.backbone), None)


def _model(client: Client, job: Job, notes: list[str]) -> Model | None:
    """The job's model as the registry shows it now (its version's tuned thresholds), None once deleted."""
    try:
        return client.get_model(job.model_id)
    except NotFound:
        notes.append(f"model {job.model_id} is gone: the thresholds shown are the job result's")
        return None


def _evaluate(client: Client, job: Job, dataset_id: str, notes: list[str]) -> EvaluateResponse:
    """Evaluate of the job's model version on the dataset, compared with each baseline model (latest version)."""
    baselines = [b.model_id for b in job.result.baselines]
    try:
        return client.evaluate(job.model_id, dataset_id, version=job.model_version, compare=baselines)
    except NotFound:
        if not baselines:
            raise
    # NOTE: a baseline model may have been deleted since; the fine-tuned model's own figures are still worth showing.
    response = client.evaluate(job.model_id, dataset_id, version=job.model_version)
    notes.append(f"the baseline models ({', '.join(baselines)}) could not be evaluated on {dataset_id}: not found")
    return response


def _write_atomically(path: Path, text: str) -> None:
    # NOTE: a sibling temp file, renamed over the target: an interrupted run never leaves half a page behind.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
