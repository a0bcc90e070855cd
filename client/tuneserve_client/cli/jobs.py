"""`tuneserve finetune` and `tuneserve jobs list|get|watch|cancel|report`, and following a job to its end (a live
progress bar, or JSON events)."""

from __future__ import annotations

import argparse

from tuneserve_client._sync import Client
from tuneserve_client.cli import render, transfer
from tuneserve_client.cli.common import Output, Subcommands, command, group, paging
from tuneserve_client.cli.progress import JobProgressView
from tuneserve_client.cli.report import command as report_cli
from tuneserve_client.proto.tuneserve.v1.training_pb2 import Job, JobState

_JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled"]
# finetune flags that set Hyperparameters fields: the dest of each flag is the field's name
_HYPERPARAMETERS = (
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "head_learning_rate",
    "max_seq_length",
    "seed",
    "metric_for_best_model",
    "regression_loss",
    "refit",
    "pair_encoding",
)


def add_finetune(commands: Subcommands) -> None:
    finetune = command(commands, "finetune", _finetune, "start a fine-tuning job")
    finetune.add_argument("--dataset", required=True, metavar="ID", help="training dataset")
    finetune.add_argument("--validation", default="", metavar="ID", help="validation dataset (default: a split)")
    finetune.add_argument("--backbone", default="", metavar="NAME", help="see `tuneserve backbones`")
    finetune.add_argument("--name", default="", metavar="MODEL_NAME", help="display name of the new model")
    finetune.add_argument("--model-id", default="", metavar="ID", help="train a new version of this model")
    finetune.add_argument("--wait", action="store_true", help="follow the job to its end (exit 0 if it succeeds)")
    hp = finetune.add_argument_group("hyperparameters (unset: the server's defaults)")
    hp.add_argument("--epochs", type=int, metavar="N")
    hp.add_argument("--max-steps", type=int, metavar="N", help="overrides --epochs when > 0")
    hp.add_argument("--batch-size", type=int, metavar="N")
    hp.add_argument("--learning-rate", type=float, metavar="X", help="of the pretrained backbone")
    hp.add_argument("--head-learning-rate", type=float, metavar="X", help="of the new classification head")
    hp.add_argument("--max-seq-length", type=int, metavar="N")
    hp.add_argument("--seed", type=int, metavar="N")
    hp.add_argument(
        "--metric", dest="metric_for_best_model", metavar="NAME",
        help="picks the best checkpoint; the task's: classification macro_f1 (default) | accuracy | loss; multi-label "
        "micro_f1 (default) | macro_f1 | samples_f1 | loss; regression rmse (default) | mae | spearman | pearson | r2 "
        "| loss",
    )
    hp.add_argument(
        "--regression-loss", choices=["mse", "huber"], help="regression: the loss on the standardised target (mse)"
    )
    hp.add_argument(
        "--refit", choices=["auto", "true", "false"],
        help="after early stopping, retrain on train+validation for the best step count and serve that model "
        "(default auto: by dataset size)",
    )
    hp.add_argument(
        "--pair-encoding", choices=["cross", "bi"],
        help="text pairs: cross (default) encodes text and text_pair as one sequence; bi encodes each alone with the "
        "shared backbone (regression: an affine map of their cosine; classification: a head on [u, v, |u-v|])",
    )
    transfer.add_finetune_options(finetune, hp)
    export = finetune.add_argument_group("export")
    export.add_argument(
        "--int8", action="store_true",
        help="also build an int8 variant, served only if it passes its guard on the task's metric",
    )
    export.add_argument(
        "--int8-max-f1-drop", type=float, metavar="X",
        help="largest drop of the task's F1 int8 may show (default 0.01); regression: largest relative RMSE rise",
    )


def add_jobs(commands: Subcommands) -> None:
    jobs = group(commands, "jobs", "follow and manage fine-tuning jobs")
    listing = paging(command(jobs, "list", _list, "list jobs"))
    listing.add_argument("--state", choices=_JOB_STATES, help="only jobs in this state")
    command(jobs, "get", _get, "show a job").add_argument("id", metavar="ID")
    watch = command(jobs, "watch", _watch, "follow a job's events to its end (exit 0 if it succeeds)")
    watch.add_argument("id", metavar="ID")
    command(jobs, "cancel", _cancel, "cancel a job").add_argument("id", metavar="ID")
    report_cli.add_report_command(jobs, command)


def _finetune(client: Client, args: argparse.Namespace, out: Output) -> int:
    if args.int8_max_f1_drop is not None and not args.int8:
        out.error("error: --int8-max-f1-drop is the int8 variant's limit; add --int8 to build one")
        return 2
    job = client.fine_tune(
        args.dataset,
        validation_dataset_id=args.validation,
        backbone=args.backbone,
        model_name=args.name,
        model_id=args.model_id,
        hyperparameters={name: getattr(args, name) for name in _HYPERPARAMETERS + transfer.STRATEGY_HYPERPARAMETERS},
        export={"int8": args.int8, "int8_max_f1_drop": args.int8_max_f1_drop},
        baselines=args.baselines,
        search=args.search,
        search_budget_seconds=args.search_budget,
    )
    if not args.wait:
        out.show(job, render.job)
        out.note(f"follow it with: {_watch_command(args, job.id)}")
        return 0
    out.note(f"job {job.id} queued")
    return _wait(client, job.id, args, out, json_events=False)


def _list(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.list_jobs(state=args.state, page_size=args.page_size, page_token=args.page_token)
    out.show(response, render.jobs)
    return 0


def _get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.get_job(args.id), render.job)
    return 0


def _watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _wait(client, args.id, args, out, json_events=True)


def _cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.cancel_job(args.id), render.job)
    return 0


# Waiting for a job (finetune --wait, jobs watch)


def _watch_command(args: argparse.Namespace, job_id: str) -> str:
    target = f" --target {args.target}" if args.target else ""
    return f"tuneserve{target} jobs watch {job_id}"


def _wait(client: Client, job_id: str, args: argparse.Namespace, out: Output, *, json_events: bool) -> int:
    """Follows the job to its end. With --json, `jobs watch` prints each event as a JSON line and `finetune --wait`
    prints the final Job; otherwise a live progress bar. Exit status 0 only if the job succeeded."""
    try:
        if out.json:
            job = client.wait_for_job(job_id, on_event=out.event if json_events else None)
            if not json_events:
                out.show(job, render.job)
        else:
            with JobProgressView(out.console, job_id) as view:
                job = client.wait_for_job(job_id, on_event=view.on_event)
    except KeyboardInterrupt:
        out.error(f"interrupted; job {job_id} keeps running. Watch it again with: {_watch_command(args, job_id)}")
        return 130
    return _job_outcome(job, out)


def _job_outcome(job: Job, out: Output) -> int:
    if job.state == JobState.JOB_STATE_SUCCEEDED:
        best = f" ({job.result.best_metric_name} {job.result.best_metric:.4f})" if job.result.best_metric_name else ""
        out.note(f"job {job.id} succeeded: model {job.model_id} version {job.model_version}{best}")
        return 0
    reason = f": {job.error}" if job.error else ""
    out.error(f"error: job {job.id} {render.state_name(job.state)}{reason}")
    return 1
