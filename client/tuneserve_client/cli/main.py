"""The `tuneserve` command line: `serve` runs the server (the [server] extra); every other command is a call of the
sync `Client`. `main(argv)` returns the exit status and writes only to sys.stdout and sys.stderr, so tests can run it
in-process. Each command group lives in a module of its own (`_cli_datasets`, `_cli_jobs`, `_cli_models`,
`_cli_predict`, `_cli_recommend`; shared pieces in `_cli_common`); this one builds the parser and runs a command.

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

from tuneserve_client._client import DEFAULT_TARGET
from tuneserve_client._exceptions import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TuneServeError,
    Unavailable,
)
from tuneserve_client._sync import Client
from tuneserve_client._version import __version__
from tuneserve_client.cli import datasets, jobs, models, predict, recommend
from tuneserve_client.cli.common import Handler, Output

_USAGE_ERRORS = (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition)
_SERVER_MISSING = (
    "error: the tuneserve server is not installed ({}); install it with: pip install 'tuneserve[server,cpu]'"
)


def resolve_target(flag: str | None, environ: Mapping[str, str]) -> str:
    """--target, else $TUNESERVE_TARGET, else localhost:50051."""
    return flag or environ.get("TUNESERVE_TARGET") or DEFAULT_TARGET


def resolve_token(flag: str | None, environ: Mapping[str, str]) -> str | None:
    """--token, else $TUNESERVE_TOKEN, else none."""
    return flag or environ.get("TUNESERVE_TOKEN") or None


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
    # in the order `tuneserve --help` lists them
    datasets.add_datasets(commands)
    jobs.add_finetune(commands)
    jobs.add_jobs(commands)
    models.add_evaluate(commands)
    predict.add_command(commands)
    models.add_models(commands)
    models.add_backbones(commands)
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
