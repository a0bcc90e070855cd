"""The locks in requirements/ agree with pyproject.toml: every requirement of the locked extras is pinned there, at a
version the requirement admits. A requirement added or tightened without `make lock` fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Each lock and the extras it is compiled with (Makefile: LOCK_COMPILE, then --extra cpu or --extra gpu).
LOCKED_EXTRAS = {
    "lock-cpu.txt": ["server", "cpu", "dev", "kubernetes", "report"],
    "lock-gpu.txt": ["server", "gpu", "dev", "kubernetes", "report"],
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)", re.MULTILINE)


def _pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in _PIN.findall(lock.read_text())}


def _requirements(extras: list[str]) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("lock_name", sorted(LOCKED_EXTRAS))
def test_lock_pins_every_requirement_at_an_admitted_version(lock_name: str) -> None:
    pins = _pins(ROOT / "requirements" / lock_name)
    problems = []
    for requirement in _requirements(LOCKED_EXTRAS[lock_name]):
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement} does not admit the locked {pinned}")
    assert not problems, f"requirements/{lock_name} disagrees with pyproject.toml; run `make lock`: {problems}"


def test_locks_cover_the_extras_the_makefile_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    default_extras = re.search(r"^EXTRAS \?= (\S+)$", makefile, re.MULTILINE)
    assert default_extras is not None
    assert set(default_extras.group(1).split(",")) <= set(LOCKED_EXTRAS["lock-cpu.txt"])
    for extra in ["dev", "kubernetes", "report", "server"]:
        assert f"--extra {extra}" in makefile, extra


def test_locks_keep_the_constraints() -> None:
    lines = [line.strip() for line in (ROOT / "constraints-cpu.txt").read_text().splitlines()]
    constraints = [Requirement(line) for line in lines if line and not line.startswith("#")]
    assert any(c.name == "torch" for c in constraints)
    for lock_name in LOCKED_EXTRAS:
        pins = _pins(ROOT / "requirements" / lock_name)
        for constraint in constraints:
            assert constraint.specifier.contains(pins[canonicalize_name(constraint.name)]), (lock_name, constraint)
