"""LocalProcessRunner with a tiny scripted worker process in place of the training worker: event lines reach the
handler, the terminal event and the exit status make the outcome (exit codes and signals become reasons), cancel
sends SIGINT and kills a worker that ignores it, a server shutdown preempts with SIGTERM; and parse_event.
(torchrun's failure summary is covered in test_kubernetes.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tuneserve.core.training.runners.base import SERVER_PID_ENV, WORKER_MODULE, WorkerOutcome, parse_event
from tuneserve.core.training.runners.local import LocalProcessRunner
from tuneserve.engines.training.worker import EXIT_PREEMPTED

WAIT = 10.0
# The spec file says what the scripted worker does: print `events` (after a line that is no JSON; an "env" event gets
# the `value` of the variable it `name`s), write `stderr`, then kill itself, wait for a signal, or exit with `exit`.
# `on_sigint` / `on_sigterm`: the events to print when that signal arrives, then exit with `<name>_exit`.
WORKER = """
import json, os, signal, sys, time
spec = json.load(open(sys.argv[-1]))
def emit(event):
    print(json.dumps(event), flush=True)
def handler(name):
    def handle(signum, frame):
        for event in spec[name]:
            emit(event)
        sys.exit(spec.get(name + "_exit", 0))
    return handle
for name, sig in (("on_sigint", signal.SIGINT), ("on_sigterm", signal.SIGTERM)):
    if name in spec:
        signal.signal(sig, handler(name))
if spec.get("ignore_sigint"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
print("Loading weights... (not an event)", flush=True)
for event in spec.get("events", []):
    emit({**event, "value": os.environ.get(event["name"], "")} if event["kind"] == "env" else event)
sys.stderr.write(spec.get("stderr", ""))
sys.stderr.flush()
if spec.get("kill_self"):
    os.kill(os.getpid(), signal.SIGKILL)
while spec.get("wait"):
    time.sleep(0.02)
sys.exit(spec.get("exit", 0))
"""

RESULT = {"kind": "result", "validation_metrics": {"macro_f1": 0.9}, "message": "done"}
PROGRESS = {"kind": "progress", "step": 1, "message": "step 1/2"}


class ScriptedWorkerRunner(LocalProcessRunner):
    """The real runner, starting the scripted worker instead of `python -m tuneserve.engines.training.worker`."""

    def __init__(self, worker: Path, cancel_grace_seconds: float = 5.0) -> None:
        super().__init__(cancel_grace_seconds)
        self._worker = worker

    def command(self, spec_path: Path) -> list[str]:
        return [sys.executable, str(self._worker), str(spec_path)]


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.worker = tmp_path / "worker.py"
        self.worker.write_text(WORKER)
        self.log = tmp_path / "worker.log"
        self.events: list[dict[str, Any]] = []
        self.cancel = asyncio.Event()
        self.first_event = asyncio.Event()

    def runner(self, grace: float = 5.0) -> ScriptedWorkerRunner:
        return ScriptedWorkerRunner(self.worker, grace)

    async def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.first_event.set()

    async def __call__(self, grace: float = 5.0, **spec: Any) -> WorkerOutcome:
        path = self.tmp_path / "spec.json"
        path.write_text(json.dumps(spec))
        return await asyncio.wait_for(self.runner(grace).run(path, self.log, self.on_event, self.cancel), WAIT)


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


async def test_events_reach_the_handler_and_the_result_makes_success(run: Run) -> None:
    outcome = await run(events=[PROGRESS, {"kind": "env", "name": SERVER_PID_ENV}, RESULT])
    assert outcome == WorkerOutcome("succeeded", result={"validation_metrics": {"macro_f1": 0.9}, "message": "done"})
    # the terminal event is the outcome, not an event; the line that is no JSON is skipped
    # the worker knows this process, so it can die with it
    assert run.events == [PROGRESS, {"kind": "env", "name": SERVER_PID_ENV, "value": str(os.getpid())}]


async def test_a_reported_failure_is_the_reason_and_is_not_retried(run: Run) -> None:
    outcome = await run(events=[PROGRESS, {"kind": "failed", "reason": "ValueError: bad row 3"}], exit=1)
    assert outcome == WorkerOutcome("failed", reason="ValueError: bad row 3")


async def test_a_worker_that_dies_without_a_report_is_retryable_with_its_last_log_line(run: Run) -> None:
    run.log.write_text("an earlier run's last line\n")  # NOTE: the log is shared by runs; only this run's counts
    outcome = await run(stderr="Traceback (most recent call last):\nRuntimeError: boom\n", exit=3)
    assert outcome == WorkerOutcome(
        "failed", reason="training worker exited with code 3; last log line: RuntimeError: boom", retryable=True
    )
    run.log.write_text("")
    assert (await run(exit=0)).reason == "training worker ended without a result; no log output"
    # a result from a worker that then failed to exit cleanly is not trusted
    assert (await run(events=[RESULT], exit=2)).status == "failed"


async def test_a_killed_worker_says_by_which_signal(run: Run) -> None:
    outcome = await run(events=[PROGRESS], kill_self=True)
    assert outcome.status == "failed" and outcome.retryable
    assert outcome.reason.startswith("training worker killed by SIGKILL (out of memory?); ")


async def test_cancel_sends_sigint_and_the_worker_reports_cancelled(run: Run) -> None:
    task = asyncio.create_task(run(events=[PROGRESS], wait=True, on_sigint=[{"kind": "cancelled", "step": 1}]))
    await asyncio.wait_for(run.first_event.wait(), WAIT)
    run.cancel.set()
    assert await task == WorkerOutcome("cancelled", reason="cancelled by request")


async def test_a_worker_that_ignores_cancel_is_killed_after_the_grace_period(run: Run) -> None:
    task = asyncio.create_task(run(grace=0.3, events=[PROGRESS], wait=True, ignore_sigint=True))
    await asyncio.wait_for(run.first_event.wait(), WAIT)
    started = asyncio.get_running_loop().time()
    run.cancel.set()
    assert await task == WorkerOutcome("cancelled", reason="cancelled by request")
    assert asyncio.get_running_loop().time() - started < 3.0


async def test_a_server_shutdown_preempts_the_worker_and_keeps_its_last_events(run: Run) -> None:
    saved = {"kind": "checkpoint", "step": 2, "message": "checkpoint saved"}
    preempted = {"kind": "preempted", "step": 2, "checkpoint": "checkpoint-2"}
    task = asyncio.create_task(
        run(events=[PROGRESS], wait=True, on_sigterm=[saved, preempted], on_sigterm_exit=EXIT_PREEMPTED)
    )
    await asyncio.wait_for(run.first_event.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert run.events == [PROGRESS, saved]  # drained after SIGTERM; the terminal "preempted" is no event


def test_the_worker_command_runs_the_worker_module_alone_or_under_torchrun(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    assert LocalProcessRunner(5.0, python="py").command(spec) == ["py", "-m", WORKER_MODULE, str(spec)]
    assert LocalProcessRunner(5.0, python="py", processes=4).command(spec) == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m", WORKER_MODULE, str(spec)
    ]


@pytest.mark.parametrize(("line", "event"), [
    (b'{"kind": "progress", "step": 3}\n', {"kind": "progress", "step": 3}),
    ('{"kind": "result"}', {"kind": "result"}),
    (b"Downloading: 100%", None),
    (b"[1, 2]", None),
    (b'{"step": 3}', None),
    (b'{"kind": 7}', None),
    (b"", None),
])
def test_parse_event_keeps_only_json_objects_with_a_kind(line: bytes | str, event: dict[str, Any] | None) -> None:
    assert parse_event(line) == event
