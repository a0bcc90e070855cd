"""Training worker entry point: `python -m tuneserve.engines.training.worker JOB_DIR/spec.json`, alone or under
`torchrun --nproc_per_node=N` (the Trainer then trains with DistributedDataParallel: gloo on CPU, nccl on GPU).

Events go to the original standard output, one JSON line each (see `spec.py`); everything else that would print
there (library prints, the Trainer's log lines) goes to stderr. Under torchrun only global rank 0 reports events,
checkpoints, exports and writes artifacts; another rank writes one line only if it fails ("failed", its reason
prefixed with its rank). Exit codes: 0 after "result" or "cancelled", 1 after "failed", 75 after "preempted"
(SIGTERM: see spec.py).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TextIO

from tuneserve.engines.training.events import EventWriter, FailedEvent, PreemptedEvent
from tuneserve.engines.training.spec import StopRequests, TrainingSpec

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped with a checkpoint to resume from; run the spec again
_MAX_REASON_CHARS = 2000
_PR_SET_PDEATHSIG = 1
_SERVER_PID_ENV = "TUNESERVE_SERVER_PID"  # set by core.runner


def main(argv: list[str]) -> int:
    # NOTE: torchrun sets RANK / WORLD_SIZE / LOCAL_WORLD_SIZE; a plain `python -m` run is rank 0 of 1.
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    events = _take_event_stream()
    writer = EventWriter(events if rank == 0 else open(os.devnull, "w"))  # noqa: SIM115 (lives as long as the process)
    stop = StopRequests()
    _die_with_server()
    # NOTE: the handlers only set flags; StopCallback stops the Trainer at its next step (on every rank).
    signal.signal(signal.SIGINT, lambda signum, frame: stop.cancel.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.preempt.set())
    try:
        if len(argv) != 1:
            raise ValueError("usage: python -m tuneserve.engines.training.worker SPEC_PATH")
        spec_path = Path(argv[0])
        spec = _threads_per_process(TrainingSpec.load(spec_path))
        # NOTE: imported only now, after stdout is redirected, so that nothing torch or transformers print while
        # importing can land in the event stream, and a failing import is still reported as a "failed" event.
        if spec.search.trials > 0:
            from tuneserve.engines.training.search import run_search

            outcome = run_search(spec, writer, stop, scratch_dir=spec_path.parent)
        else:
            from tuneserve.engines.training.pipeline import run_training

            outcome = run_training(spec, writer, stop, scratch_dir=spec_path.parent)
    except Exception as error:
        traceback.print_exc()
        reason = _one_line(error)
        EventWriter(events).write(FailedEvent(reason=f"rank {rank}: {reason}" if world_size > 1 else reason))
        return 1
    if outcome is not None:
        writer.write(outcome)
    return EXIT_PREEMPTED if isinstance(outcome, PreemptedEvent) or stop.preempt.is_set() else 0


def _threads_per_process(spec: TrainingSpec) -> TrainingSpec:
    """The job's torch threads shared among the processes torchrun started on this machine (at least one each)."""
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if spec.threads <= 0 or local_processes <= 1:
        return spec
    return dataclasses.replace(spec, threads=max(1, spec.threads // local_processes))


def _die_with_server() -> None:
    """A worker must not outlive the server that started it (a SIGKILLed server cannot stop it, and after a restart
    nothing would own it): the kernel kills it when its parent dies (PR_SET_PDEATHSIG), and a watcher thread kills its
    process group (torchrun and every rank, data-loader children) once the server's pid is gone."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    server_pid = int(os.environ.get(_SERVER_PID_ENV, "0") or 0)
    if server_pid > 0:
        threading.Thread(target=_watch_server, args=(server_pid,), name="server-watch", daemon=True).start()


def _watch_server(pid: int) -> None:
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"the server (pid {pid}) is gone; stopping this worker", file=sys.stderr, flush=True)
            os.killpg(os.getpgrp(), signal.SIGKILL)
        except PermissionError:
            pass  # NOTE: the pid exists (owned by someone else only if it was reused; then prctl still covers it)
        threading.Event().wait(1.0)


def _take_event_stream() -> TextIO:
    """Keep the real stdout for events and point file descriptor 1 (print, C libraries) at stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(events_fd, "w", encoding="utf-8")


def _one_line(error: BaseException) -> str:
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    if getattr(error, "errno", None) == errno.ENOSPC or os.strerror(errno.ENOSPC) in reason:
        reason = f"disk full (free space on the data volume and train again): {reason}"
    return reason[:_MAX_REASON_CHARS]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
