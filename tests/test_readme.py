"""The README stays true: its settings table is the generated one, and it names every CLI command."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_settings_table_is_current() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from settings_table import table

    start, end = "<!-- settings-table:start -->\n", "\n<!-- settings-table:end -->"
    current = README[README.index(start) + len(start) : README.index(end)]
    assert current == table(), "README settings table is stale: run tools/settings_table.py and paste its output"


def test_every_cli_command_is_documented() -> None:
    from tuneserve_client.cli.main import build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    assert commands
    for command in commands:
        assert f"tuneserve {command}" in README or f"`{command.split()[-1]} " in README, command


def _subcommands(parser, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix}{name}")
                found += _subcommands(sub, f"{prefix}{name} ")
    return found
