"""What every runner shares: the `Runner` contract, and reading a worker's event lines and exit into a
`WorkerOutcome`. A runner runs one fine-tune's worker (`python -m tuneserve.engines.training.worker SPEC`) outside
the serving process: `local.LocalProcessRunner` as a process of this machine (under torchrun for several processes),
`kubernetes.KubernetesJobRunner` as a Kubernetes Job; `factory.build_runner` picks one from the settings.

A crashed or OOM-killed worker can never take the serving process down; the event loop only reads the worker's
event lines. The protocol is documented in `tuneserve.engines.training.spec`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from tuneserve.engines.training.worker import EXIT_PREEMPTED

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
SERVER_PID_ENV = "TUNESERVE_SERVER_PID"
WORKER_MODULE = "tuneserve.engines.training.worker"
TERMINAL_KINDS = ("result", "failed", "cancelled", "preempted")


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


def exit_reason(returncode: int) -> str:
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
    return fields["rank"], exit_reason(fields["exitcode"]) or "exited"


def _tail(log_lines: list[str]) -> str:
    return f"last log line: {log_lines[-1][:300]}" if log_lines else "no log output"


