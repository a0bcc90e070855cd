"""The docs stay true and the site builds: the settings table is the generated one, the CLI and API references name
every command, flag, service and RPC, every page of the nav exists, the README stays a short index, and
`mkdocs build --strict` passes (a broken link or anchor fails it)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 150


def test_settings_table_is_current() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from settings_table import table
    finally:
        sys.path.remove(str(ROOT / "tools"))

    page = (DOCS / "reference" / "settings.md").read_text()
    start, end = "<!-- settings-table:start -->\n", "\n<!-- settings-table:end -->"
    current = page[page.index(start) + len(start) : page.index(end)]
    assert current == table(), (
        "docs/reference/settings.md's table is stale: run tools/settings_table.py and paste its output between the markers"
    )


def test_every_cli_command_and_flag_is_documented() -> None:
    from tuneserve_client.cli.main import build_parser

    page = (DOCS / "reference" / "cli.md").read_text()
    parser = build_parser()
    for flag in _long_options(parser):
        assert _mentions(page, flag), f"global option {flag} is missing from docs/reference/cli.md"
    commands = _subcommands(parser)
    assert commands
    for command, sub in commands:
        assert f"tuneserve {command}" in page, f"`tuneserve {command}` is missing from docs/reference/cli.md"
        for flag in _long_options(sub):
            assert _mentions(_section(page, f"### tuneserve {command}"), flag), (
                f"tuneserve {command} {flag} is undocumented"
            )


def test_every_serve_flag_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    server = pytest.importorskip("tuneserve.server", reason="tuneserve serve's flags need the [server] extra")
    with pytest.raises(SystemExit):
        server.parse_args(["--help"])
    flags = set(re.findall(r"--[a-z][a-z-]*[a-z]", capsys.readouterr().out)) - {"--help"}
    assert flags
    section = _section((DOCS / "reference" / "cli.md").read_text(), "### tuneserve serve")
    assert not {flag for flag in flags if not _mentions(section, flag)}, (
        "tuneserve serve flags missing from the CLI page"
    )


def test_every_service_and_rpc_is_in_the_api_reference() -> None:
    page = (DOCS / "reference" / "api.md").read_text()
    for proto in sorted((ROOT / "protos").rglob("*.proto")):
        text = proto.read_text()
        package = re.search(r"^package ([\w.]+);", text, re.M)
        for service in re.findall(r"^service (\w+)", text, re.M):
            name = f"{package.group(1)}.{service}" if package else service
            assert f"`{name}`" in page, (
                f"service {name} ({proto.relative_to(ROOT)}) is missing from docs/reference/api.md"
            )
        for rpc in re.findall(r"^\s*rpc (\w+)", text, re.M):
            assert f"`{rpc}`" in page, f"RPC {rpc} ({proto.relative_to(ROOT)}) is missing from docs/reference/api.md"


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    # NOTE: a regex, not yaml.safe_load: mkdocs.yml holds a !!python/name tag (the mermaid fence) that safe_load refuses
    nav = re.findall(r"^\s*- (?:[^:\n]+: )?([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert nav
    assert not [page for page in nav if not (DOCS / page).is_file()], "mkdocs.yml's nav names pages docs/ lacks"
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert pages == set(nav), f"pages outside the nav: {sorted(pages - set(nav))}"


def test_readme_is_a_short_index() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, (
        f"README.md is over {README_MAX_LINES} lines: move detail to docs/"
    )
    assert "\nmake run " in text and "\nmake test " in text, "README.md must keep the two commands"
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # relative links (no scheme)
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed (the [dev] extra has them)",
)
def test_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**_environ(), "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix}{name}", sub))
                found += _subcommands(sub, f"{prefix}{name} ")
    return found


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [
        flag
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    ]


def _mentions(text: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def _section(page: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    start = page.index(heading + "\n")
    level = heading.split(" ")[0]
    following = re.search(rf"^#{{1,{len(level)}}} ", page[start + len(heading) :], re.M)
    return page[start : start + len(heading) + following.start()] if following else page[start:]
