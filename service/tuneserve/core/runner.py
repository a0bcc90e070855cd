"""Runs one fine-tune in its own worker process (`python -m tuneserve.engines.training.worker SPEC`).

A crashed or OOM-killed worker can never take the serving process down; the event loop only reads the worker's
event lines. The protocol is documented in `tuneserve.engines.training.spec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class WorkerOutcome:
    status: Literal["succeeded", "failed", "cancelled"]
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)


class LocalProcessRunner:
    def __init__(self, cancel_grace_seconds: float, python: str = sys.executable) -> None:
        self._grace = cancel_grace_seconds
        self._python = python

    async def run(
        self, spec_path: Path, log_path: Path, on_event: EventHandler, cancel: asyncio.Event
    ) -> WorkerOutcome:
        with open(log_path, "ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                self._python, "-m", "tuneserve.engines.training.worker", str(spec_path),
                stdout=asyncio.subprocess.PIPE, stderr=stderr, stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # NOTE: its own process group, so a kill reaches data-loader children too
                limit=16 * 1024 * 1024,
            )
        stopper = asyncio.create_task(self._stop_on_cancel(proc, cancel))
        final: dict[str, Any] = {}
        try:
            assert proc.stdout is not None
            async for line in proc.stdout:
                event = _parse(line)
                if event is None:
                    continue
                if event["kind"] in ("result", "failed", "cancelled"):
                    final = event
                else:
                    await on_event(event)
            returncode = await proc.wait()
        except BaseException:
            _killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            stopper.cancel()
        return _outcome(final, returncode, cancel.is_set(), log_path)

    async def _stop_on_cancel(self, proc: asyncio.subprocess.Process, cancel: asyncio.Event) -> None:
        await cancel.wait()
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._grace)
        except asyncio.TimeoutError:
            log.warning("worker %d ignored SIGTERM for %.0fs; killing it", proc.pid, self._grace)
            _killpg(proc.pid, signal.SIGKILL)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        log.debug("ignoring non-JSON worker output: %r", line[:200])
        return None
    return event if isinstance(event, dict) and isinstance(event.get("kind"), str) else None


def _outcome(final: dict[str, Any], returncode: int, cancel_requested: bool, log_path: Path) -> WorkerOutcome:
    kind = final.get("kind")
    if kind == "result" and returncode == 0:
        return WorkerOutcome("succeeded", result={k: v for k, v in final.items() if k != "kind"})
    if cancel_requested or kind == "cancelled":
        return WorkerOutcome("cancelled", reason="cancelled by request")
    if kind == "failed":
        return WorkerOutcome("failed", reason=str(final.get("reason", "training failed")))
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return WorkerOutcome("failed", reason=f"training worker killed by {name}{hint}; {_tail(log_path)}")
    return WorkerOutcome("failed", reason=f"training worker exited with code {returncode}; {_tail(log_path)}")


def _tail(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"last log line: {lines[-1][:300]}"
    return "no log output"


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
