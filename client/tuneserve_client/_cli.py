"""The `tuneserve` command line: `serve` runs the server (the [server] extra); every other command is a call of the
sync `Client`. `main(argv)` returns the exit status and writes only to sys.stdout and sys.stderr, so tests can run it
in-process.

Exit status: 0 success; 1 a failed call (UNAVAILABLE, INTERNAL...) or a job that did not succeed; 2 a usage error
(bad flags, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, an unreadable file); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeAlias, TypeVar

from google.protobuf.message import Message
from rich.console import Console

from . import _cli_recommend as recommend
from . import _cli_report as report_cli
from . import _cli_transfer as transfer
from . import _render as render
from ._client import DEFAULT_TARGET
from ._exceptions import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TuneServeError,
    Unavailable,
)
from ._progress import JobProgressView
from ._proto.tuneserve.v1.training_pb2 import Job, JobEvent, JobState
from ._sync import Client
from ._version import __version__

_M = TypeVar("_M", bound=Message)
Handler: TypeAlias = Callable[[Client, argparse.Namespace, "Output"], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # argparse has no public name

_USAGE_ERRORS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition)
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
)
_PIPE_WIDTH = 250
_SERVER_MISSING = (
    "error: the tuneserve server is not installed ({}); install it with: pip install 'tuneserve[server,cpu]'"
)


class Output:
    """Where a command writes: people get rich tables and lines on stdout, scripts (`--json`) get the response
    messages as JSON; errors go to stderr as one line. Colour only on a terminal (rich decides)."""

    def __init__(self, json: bool) -> None:
        self.json = json
        self.console = Console(file=sys.stdout, markup=False, highlight=False, emoji=False)
        if not self.console.is_terminal:
            # piped or captured: no wrapping at rich's default of 80 columns (the progress line is wider)
            self.console.width = _PIPE_WIDTH

    def show(self, message: _M, render_human: Callable[[Console, _M], None]) -> None:
        if self.json:
            print(render.to_json(message), file=sys.stdout, flush=True)
        else:
            render_human(self.console, message)

    def done(self, message: Message, line: str) -> None:
        """A response with nothing to show (e.g. DeleteDatasetResponse): JSON for scripts, a line for people."""
        self.show(message, lambda console, _: console.print(line, soft_wrap=True))

    def event(self, event: JobEvent) -> None:
        print(render.to_json(event, indent=None), file=sys.stdout, flush=True)

    def note(self, line: str) -> None:
        if not self.json:
            self.console.print(line, soft_wrap=True)

    def error(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def resolve_target(flag: str | None, environ: Mapping[str, str]) -> str:
    """--target, else $TUNESERVE_TARGET, else localhost:50051."""
    return flag or environ.get("TUNESERVE_TARGET") or DEFAULT_TARGET


def resolve_token(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """--token, else $TUNESERVE_TOKEN, else none."""
    return flag or environ.get("TUNESERVE_TOKEN") or None


# Commands: each takes (client, args, out) and returns the exit status.


def _datasets_upload(client: Client, args: argparse.Namespace, out: Output) -> int:
    dataset = client.upload_dataset(
        args.path, name=args.name, format=args.format, text_column=args.text_column, label_column=args.label_column,
        image_column=args.image_column,
    )
    out.show(dataset, render.dataset)
    return 0


def _datasets_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.list_datasets(page_size=args.page_size, page_token=args.page_token), render.datasets)
    return 0


def _datasets_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.get_dataset(args.id), render.dataset)
    return 0


def _datasets_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.done(client.delete_dataset(args.id), f"deleted dataset {args.id}")
    return 0


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
    )
    if not args.wait:
        out.show(job, render.job)
        out.note(f"follow it with: {_watch_command(args, job.id)}")
        return 0
    out.note(f"job {job.id} queued")
    return _wait(client, job.id, args, out, json_events=False)


def _jobs_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.list_jobs(state=args.state, page_size=args.page_size, page_token=args.page_token)
    out.show(response, render.jobs)
    return 0


def _jobs_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.get_job(args.id), render.job)
    return 0


def _jobs_watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _wait(client, args.id, args, out, json_events=True)


def _jobs_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.cancel_job(args.id), render.job)
    return 0


def _evaluate(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.evaluate(args.model, args.dataset, version=args.version, compare=args.compare)
    out.show(response, render.evaluation_response)
    return 0


def _predict(client: Client, args: argparse.Namespace, out: Output) -> int:
    if bool(args.texts) == bool(args.images):
        raise ValueError("give TEXT arguments (a text model) or --image FILE options (an image model), one kind only")
    images = [Path(path).read_bytes() for path in args.images]
    response = client.predict(
        args.model, args.texts, images=images, version=args.version, top_k=args.top_k, alias=args.alias,
        variant=args.variant,
    )
    if images:
        out.show(response, lambda console, r: render.predictions(console, r, args.images, header="IMAGE"))
    else:
        out.show(response, lambda console, r: render.predictions(console, r, args.texts))
    return 0


def _models_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.list_models(page_size=args.page_size, page_token=args.page_token), render.models)
    return 0


def _models_get(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.get_model(args.id), render.model)
    return 0


def _models_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.done(client.delete_model(args.id), f"deleted model {args.id}")
    return 0


def _models_load(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.load_model(args.id, version=args.version, variant=args.variant), render.model)
    return 0


def _models_unload(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.unload_model(args.id, version=args.version), render.model)
    return 0


def _models_alias(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.set_model_alias(args.id, args.name, args.version), render.model)
    return 0


def _backbones(client: Client, args: argparse.Namespace, out: Output) -> int:
    out.show(client.list_backbones(), render.backbones)
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


# serve: the server's own flags, handled by tuneserve.server


def _serve(argv: list[str]) -> int:
    try:
        server = importlib.import_module("tuneserve.server")  # the [server] extra: imported only here
    except ImportError as exc:
        print(_SERVER_MISSING.format(exc), file=sys.stderr)
        return 1
    server_main: Callable[[list[str]], int] = server.main
    return server_main(argv)


# The parser


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _command(commands: Subcommands, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def _group(parent: Subcommands, name: str, help: str) -> Subcommands:
    parser = parent.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _paging(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--page-size", type=int, default=0, metavar="N", help="results per page (server default 50)")
    parser.add_argument("--page-token", default="", metavar="TOKEN", help="the page after a previous listing")
    return parser


def _add_datasets(commands: Subcommands) -> None:
    datasets = _group(commands, "datasets", "upload and manage labelled datasets")
    upload = _command(
        datasets, "upload", _datasets_upload, "upload a CSV or JSONL file, or a zip of images in class folders"
    )
    upload.add_argument("path", metavar="PATH")
    upload.add_argument("--name", help="display name (default: the file name)")
    upload.add_argument("--format", choices=["csv", "jsonl", "zip"], help="default: from the file name's extension")
    upload.add_argument("--text-column", default="", metavar="C", help="column of the text (default text)")
    upload.add_argument("--label-column", default="", metavar="C", help="column of the label (default label)")
    upload.add_argument(
        "--image-column", default="", metavar="C", help="JSONL field holding base64 images (makes it an image dataset)"
    )
    _paging(_command(datasets, "list", _datasets_list, "list datasets"))
    _command(datasets, "get", _datasets_get, "show a dataset").add_argument("id", metavar="ID")
    _command(datasets, "delete", _datasets_delete, "delete a dataset").add_argument("id", metavar="ID")


def _add_finetune(commands: Subcommands) -> None:
    finetune = _command(commands, "finetune", _finetune, "start a fine-tuning job")
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
    transfer.add_finetune_options(finetune, hp)
    export = finetune.add_argument_group("export")
    export.add_argument(
        "--int8", action="store_true", help="also build an int8 variant, served only if it passes its F1 guard"
    )
    export.add_argument(
        "--int8-max-f1-drop", type=float, metavar="X", help="largest macro F1 drop int8 may show (default 0.01)"
    )


def _add_jobs(commands: Subcommands) -> None:
    jobs = _group(commands, "jobs", "follow and manage fine-tuning jobs")
    listing = _paging(_command(jobs, "list", _jobs_list, "list jobs"))
    listing.add_argument("--state", choices=_JOB_STATES, help="only jobs in this state")
    _command(jobs, "get", _jobs_get, "show a job").add_argument("id", metavar="ID")
    watch = _command(jobs, "watch", _jobs_watch, "follow a job's events to its end (exit 0 if it succeeds)")
    watch.add_argument("id", metavar="ID")
    _command(jobs, "cancel", _jobs_cancel, "cancel a job").add_argument("id", metavar="ID")
    report_cli.add_report_command(jobs, _command)


def _add_models(commands: Subcommands) -> None:
    evaluate = _command(commands, "evaluate", _evaluate, "evaluate a model on a dataset")
    evaluate.add_argument("--model", required=True, metavar="ID")
    evaluate.add_argument("--dataset", required=True, metavar="ID")
    evaluate.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    transfer.add_compare_option(evaluate)
    predict = _command(commands, "predict", _predict, "classify texts or images")
    predict.add_argument("--model", required=True, metavar="ID")
    predict.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    predict.add_argument("--top-k", type=int, default=0, metavar="K", help="class scores per text (default: all)")
    predict.add_argument(
        "--alias", default="", metavar="A", help="a version alias (latest, production...); overrides --version"
    )
    predict.add_argument("--variant", default="", metavar="V", help="fp32 (default) or int8 when the model has one")
    predict.add_argument(
        "--image", dest="images", action="append", default=[], metavar="FILE",
        help="an image file (JPEG, PNG, WEBP, BMP) for an image model; repeat for several",
    )
    predict.add_argument("texts", nargs="*", metavar="TEXT")
    models = _group(commands, "models", "list and manage fine-tuned models")
    _paging(_command(models, "list", _models_list, "list models"))
    _command(models, "get", _models_get, "show a model and its versions").add_argument("id", metavar="ID")
    _command(models, "delete", _models_delete, "delete a model").add_argument("id", metavar="ID")
    load = _command(models, "load", _models_load, "open and warm up a version's session now")
    load.add_argument("id", metavar="ID")
    load.add_argument("--version", type=int, default=0, metavar="N", help="default: the latest ready version")
    load.add_argument("--variant", default="", metavar="V", help="fp32 (default) or int8")
    unload = _command(models, "unload", _models_unload, "close a version's sessions (default: every version)")
    unload.add_argument("id", metavar="ID")
    unload.add_argument("--version", type=int, default=0, metavar="N", help="default: every loaded version")
    alias = _command(models, "alias", _models_alias, "point an alias at a ready version (version 0 removes it)")
    alias.add_argument("id", metavar="ID")
    alias.add_argument("name", metavar="NAME", help="lowercase letters, digits and '-', e.g. production")
    alias.add_argument("version", type=int, metavar="VERSION")
    _command(commands, "backbones", _backbones, "list the pretrained backbones the server offers")


def _add_security(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("security")
    group.add_argument(
        "--token", metavar="TOKEN", help="bearer token (default: $TUNESERVE_TOKEN; prefer it: flags show in `ps`)"
    )
    group.add_argument("--tls", action="store_true", help="connect with TLS (server checked against system roots)")
    group.add_argument("--ca-cert", metavar="PATH", help="PEM CA that signed the server's certificate (implies --tls)")
    group.add_argument("--client-cert", metavar="PATH", help="PEM client certificate for mutual TLS (+ --client-key)")
    group.add_argument("--client-key", metavar="PATH", help="PEM private key of --client-cert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneserve", description="Fine-tune pretrained models, evaluate them and serve predictions."
    )
    parser.add_argument(
        "--target", metavar="HOST:PORT", help=f"server (default: $TUNESERVE_TARGET or {DEFAULT_TARGET})"
    )
    parser.add_argument("--json", action="store_true", help="print responses as JSON (proto field names)")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="deadline of each call, 0 for none (default 60; streams have none)",
    )
    _add_security(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # add_help=False: every argument after `serve`, --help included, belongs to the server (see main)
    commands.add_parser(
        "serve", add_help=False, help="run the server (needs tuneserve[server,cpu]); `serve --help` lists its flags"
    )
    _add_datasets(commands)
    _add_finetune(commands)
    _add_jobs(commands)
    _add_models(commands)
    recommend.add_command(commands)
    return parser


# main


def _error_line(exc: TuneServeError, target: str) -> str:
    if isinstance(exc, Unavailable):
        return f"error: UNAVAILABLE: cannot reach the tuneserve server at {target} ({exc.details})"
    if isinstance(exc, DeadlineExceeded):
        return f"error: DEADLINE_EXCEEDED: {exc.details} (a longer --timeout S, or 0 for none, gives it more time)"
    return f"error: {exc.code.name}: {exc.details}"


def _silence_stdout() -> None:
    # Python would report the broken pipe again when it flushes stdout at exit
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _call(args: argparse.Namespace) -> int:
    out = Output(args.json)
    target = resolve_target(args.target, os.environ)
    try:
        with Client(
            target, timeout=args.timeout or None, token=resolve_token(args.token, os.environ), tls=args.tls,
            root_certificates=args.ca_cert, client_cert=args.client_cert, client_key=args.client_key,
        ) as client:
            handler: Handler = args.handler
            return handler(client, args, out)
    except TuneServeError as exc:
        out.error(_error_line(exc, target))
        return 2 if isinstance(exc, _USAGE_ERRORS) else 1
    except BrokenPipeError:  # `tuneserve ... | head`: stop quietly, as the rest of a pipeline does
        _silence_stdout()
        return 1
    except (OSError, ValueError) as exc:  # raised before any call: an unreadable file, a bad value
        out.error(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        # parse_known_args: `serve` hands every argument it is given to the server, unparsed and in order
        args, rest = parser.parse_known_args(argv)
        if args.command == "serve":
            return _serve(rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _call(args)
    except SystemExit as exc:  # argparse's --help and usage errors (also the server's)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
