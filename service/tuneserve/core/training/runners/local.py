"""The local runner: the worker as a process of this machine, `python -m tuneserve.engines.training.worker SPEC`, or
with `training.processes_per_job` > 1 under `torchrun --standalone --nproc_per_node=N` (DDP through the Trainer).
Each in a process group of its own, so cancel (SIGINT), preemption (SIGTERM) and kill reach its children too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

import psutil

from tuneserve.core.training.runners.base import (
    SERVER_PID_ENV,
    TERMINAL_KINDS,
    WORKER_MODULE,
    EventHandler,
    WorkerOutcome,
    exit_reason,
    outcome_of,
    parse_event,
)

log = logging.getLogger(__name__)


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
                if event["kind"] in TERMINAL_KINDS:
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
        return outcome_of(finals, exit_reason(returncode), cancel.is_set(), _log_lines(log_path, log_start))

    async def _stop_on_cancel(self, proc: asyncio.subprocess.Process, cancel: asyncio.Event) -> None:
        await cancel.wait()
        await self._stop(proc, signal.SIGINT, proc.wait())

    async def _preempt(self, proc: asyncio.subprocess.Process, on_event: EventHandler) -> None:
        """SIGTERM: the worker finishes its step, saves a checkpoint and exits; its events until then are kept."""

        async def drain() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                event = parse_event(line)
                if event is not None and event["kind"] not in TERMINAL_KINDS:
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


def _log_lines(log_path: Path, start: int, max_bytes: int = 64 * 1024) -> list[str]:
    with contextlib.suppress(OSError), open(log_path, "rb") as stream:
        stream.seek(max(start, log_path.stat().st_size - max_bytes))
        return [ln for ln in stream.read().decode(errors="replace").splitlines() if ln.strip()]
    return []


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
