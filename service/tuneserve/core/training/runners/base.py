"""Runs one fine-tune in a worker process of its own: `python -m tuneserve.engines.training.worker SPEC`, or with
`training.processes_per_job` > 1 that worker under `torchrun --standalone --nproc_per_node=N` (DDP through the
Trainer on this machine). `kubernetes_runner.KubernetesJobRunner` runs the same worker as a Kubernetes Job.

A crashed or OOM-killed worker can never take the serving process down; the event loop only reads the worker's
event lines. The protocol is documented in `tuneserve.engines.training.spec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import psutil

from tuneserve.engines.training.worker import EXIT_PREEMPTED
from tuneserve.errors import ConfigError

if TYPE_CHECKING:
    from tuneserve.settings import Settings

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
SERVER_PID_ENV = "TUNESERVE_SERVER_PID"
WORKER_MODULE = "tuneserve.engines.training.worker"
_TERMINAL = ("result", "failed", "cancelled", "preempted")


@dataclass
class WorkerOutcome:
    status: Literal["succeeded", "failed", "cancelled"]
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    retryable: bool = False
    """A failure another run of the spec may not repeat: the worker was killed (a signal, e.g. the OOM killer),
    crashed without reporting, or was preempted; it resumes from its last checkpoint. A reported exception is not."""


class Runner(Protocol):
    """Runs the worker for one spec: progress events go to on_event as they come; setting `cancel` stops it. When the
    run itself is cancelled (the server shutting down), the worker is preempted: it gets `cancel_grace_seconds` to save
    a checkpoint, which the next run of the spec resumes from."""

    async def run(
        self, spec_path: Path, log_path: Path, on_event: EventHandler, cancel: asyncio.Event
    ) -> WorkerOutcome: ...


def build_runner(settings: Settings) -> Runner:
    """The runner `training.runner` names; raises ConfigError for settings that cannot work together."""
    training = settings.training
    if training.runner == "kubernetes":
        from tuneserve.core.training.runners.kubernetes import KubernetesJobRunner

        return KubernetesJobRunner.from_settings(settings)
    if training.nodes_per_job > 1:
        raise ConfigError(
            f"training.nodes_per_job = {training.nodes_per_job} needs training.runner = kubernetes "
            "(the local runner trains on this machine only; use processes_per_job for its GPUs)"
        )
    return LocalProcessRunner(training.cancel_grace_seconds, processes=training.processes_per_job)


class LocalProcessRunner:
    def __init__(self, cancel_grace_seconds: float, python: str = sys.executable, processes: int = 1) -> None:
        self._grace = cancel_grace_seconds
        self._python = python
        self._processes = processes

    def command(self, spec_path: Path) -> list[str]:
        worker = ["-m", WORKER_MODULE, str(spec_path)]
        if self._processes <= 1:
            return [self._python, *worker]
        # NOTE: --standalone: a private rendezvous on a free localhost port, so concurrent jobs never meet.
        return [self._python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={self._processes}",
                *worker]

    async def run(
        self, spec_path: Path, log_path: Path, on_event: EventHandler, cancel: asyncio.Event
    ) -> WorkerOutcome:
        with open(log_path, "ab") as stderr:
            log_start = stderr.tell()  # NOTE: the log is appended to across runs (baselines, restarts); read only ours
            proc = await asyncio.create_subprocess_exec(
                *self.command(spec_path),
                stdout=asyncio.subprocess.PIPE, stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # NOTE: its own process group, so a kill reaches data-loader children too
                env={**os.environ, SERVER_PID_ENV: str(os.getpid())},  # the worker dies with this process
                limit=16 * 1024 * 1024,
            )
        stopper = asyncio.create_task(self._stop_on_cancel(proc, cancel))
        finals: list[dict[str, Any]] = []
        try:
            assert proc.stdout is not None
            async for line in proc.stdout:
                event = parse_event(line)
                if event is None:
                    continue
                if event["kind"] in _TERMINAL:
                    finals.append(event)
                else:
                    await on_event(event)
            returncode = await proc.wait()
        except asyncio.CancelledError:
            stopper.cancel()
            await self._preempt(proc, on_event)
            raise
        except BaseException:
            _signal_groups(_process_groups(proc.pid), signal.SIGKILL)
            raise
        finally:
            stopper.cancel()
        return outcome_of(finals, _exit_reason(returncode), cancel.is_set(), _log_lines(log_path, log_start))

    async def _stop_on_cancel(self, proc: asyncio.subprocess.Process, cancel: asyncio.Event) -> None:
        await cancel.wait()
        await self._stop(proc, signal.SIGINT, proc.wait())

    async def _preempt(self, proc: asyncio.subprocess.Process, on_event: EventHandler) -> None:
        """SIGTERM: the worker finishes its step, saves a checkpoint and exits; its events until then are kept."""

        async def drain() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                event = parse_event(line)
                if event is not None and event["kind"] not in _TERMINAL:
                    await on_event(event)
            await proc.wait()

        await self._stop(proc, signal.SIGTERM, drain())

    async def _stop(self, proc: asyncio.subprocess.Process, sig: signal.Signals, stopped: Awaitable[object]) -> None:
        """Send sig to the worker, give it cancel_grace_seconds for `stopped`, then kill it."""
        # NOTE: collected now, while torchrun is alive: it starts each rank in a session of its own, which a kill of
        # torchrun's group alone would miss, and a rank whose parent died can no longer be found.
        groups = _process_groups(proc.pid)
        _signal_groups(groups, sig)
        try:
            await asyncio.wait_for(stopped, self._grace)
        except asyncio.TimeoutError:
            log.warning("worker %d ignored %s for %.0fs; killing it", proc.pid, sig.name, self._grace)
            _signal_groups(groups | _process_groups(proc.pid), signal.SIGKILL)


def parse_event(line: bytes | str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        log.debug("ignoring non-JSON worker output: %r", line[:200])
        return None
    return event if isinstance(event, dict) and isinstance(event.get("kind"), str) else None


def outcome_of(
    finals: list[dict[str, Any]], exit_reason: str, cancel_requested: bool, log_lines: list[str]
) -> WorkerOutcome:
    """The job's outcome from the worker's terminal events ("result", "failed", "cancelled", one per rank that wrote
    one), how it exited ("" = exit code 0, else e.g. "exited with code 1", "killed by SIGKILL") and its log's tail."""
    kinds = [event["kind"] for event in finals]
    if "result" in kinds and not exit_reason:
        result = finals[kinds.index("result")]
        return WorkerOutcome("succeeded", result={k: v for k, v in result.items() if k != "kind"})
    if cancel_requested or (kinds == ["cancelled"] and not exit_reason):
        return WorkerOutcome("cancelled", reason="cancelled by request")
    failures = [str(event.get("reason", "training failed")) for event in finals if event["kind"] == "failed"]
    root = _torchrun_root_cause(log_lines)
    if "preempted" in kinds and root is None:  # NOTE: torchrun also SIGTERMs the other ranks when one dies
        step = finals[kinds.index("preempted")].get("step", 0)
        return WorkerOutcome("failed", reason=f"training worker preempted (SIGTERM) at step {step}", retryable=True)
    if root is not None:
        rank, how = root
        # NOTE: the failing rank's own exception says most; the others only saw their peer vanish.
        own = [reason for reason in failures if reason.startswith(f"rank {rank}:")] or [
            reason for reason in failures if not reason.startswith("rank ")  # a single-process torchrun
        ]
        if own:
            return WorkerOutcome("failed", reason=own[0])
        return WorkerOutcome("failed", reason=f"training rank {rank} {how}", retryable=True)
    if failures:
        return WorkerOutcome("failed", reason=failures[0])
    return WorkerOutcome(
        "failed", reason=f"training worker {exit_reason or 'ended without a result'}; {_tail(log_lines)}", retryable=True
    )


def _exit_reason(returncode: int) -> str:
    if returncode in (0, EXIT_PREEMPTED):  # NOTE: a preempted worker's own "preempted" event says it
        return ""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return f"exited with code {returncode}"


# torchrun's failure summary names the first rank that failed:
#   Root Cause (first observed failure):
#   [0]:
#     rank      : 1 (local_rank: 1)
#     exitcode  : -9 (pid: 17333)  (SIGKILL)
_ROOT_CAUSE = "Root Cause (first observed failure):"
_FIELD = re.compile(r"^\s*(rank|exitcode)\s*:\s*(-?\d+)")


def _torchrun_root_cause(log_lines: list[str]) -> tuple[int, str] | None:
    starts = [i for i, line in enumerate(log_lines) if _ROOT_CAUSE in line]
    if not starts:
        return None
    fields: dict[str, int] = {}
    for line in log_lines[starts[-1] + 1 : starts[-1] + 12]:
        match = _FIELD.match(line)
        if match:
            fields.setdefault(match.group(1), int(match.group(2)))
    if "rank" not in fields or "exitcode" not in fields:
        return None
    return fields["rank"], _exit_reason(fields["exitcode"]) or "exited"


def _log_lines(log_path: Path, start: int, max_bytes: int = 64 * 1024) -> list[str]:
    with contextlib.suppress(OSError), open(log_path, "rb") as stream:
        stream.seek(max(start, log_path.stat().st_size - max_bytes))
        return [ln for ln in stream.read().decode(errors="replace").splitlines() if ln.strip()]
    return []


def _tail(log_lines: list[str]) -> str:
    return f"last log line: {log_lines[-1][:300]}" if log_lines else "no log output"


def _process_groups(pid: int) -> set[int]:
    """The process group of the worker and those of its descendants."""
    groups = {pid}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                groups.add(os.getpgid(child.pid))
    return groups


def _signal_groups(groups: Iterable[int], sig: signal.Signals) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
