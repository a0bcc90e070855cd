"""What the CLI's command modules share: `Output` (where a command writes), the `Handler` type of a command, and the
parser helpers that register a command (`command`, `group`, `paging`).

Each command group has a module of its own (`_cli_datasets`, `_cli_jobs`, `_cli_models`, `_cli_predict`,
`_cli_recommend`, `_cli_report`, `_cli_transfer`); `_cli` builds the parser from them and runs `main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeAlias, TypeVar

from google.protobuf.message import Message
from rich.console import Console

from tuneserve_client._sync import Client
from tuneserve_client.cli import render
from tuneserve_client.proto.tuneserve.v1.training_pb2 import JobEvent

_M = TypeVar("_M", bound=Message)
Handler: TypeAlias = Callable[[Client, argparse.Namespace, "Output"], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # argparse has no public name

_PIPE_WIDTH = 250


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


def command(commands: Subcommands, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
    """Adds the command `name`, run by `handler(client, args, out)`, to a command group."""
    parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def group(parent: Subcommands, name: str, help: str) -> Subcommands:
    """Adds a command group (`tuneserve datasets ACTION`) and returns the place to add its actions."""
    parser = parent.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def paging(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The --page-size and --page-token flags of a list command."""
    parser.add_argument("--page-size", type=int, default=0, metavar="N", help="results per page (server default 50)")
    parser.add_argument("--page-token", default="", metavar="TOKEN", help="the page after a previous listing")
    return parser
