"""Training worker entry point: `python -m tuneserve.engines.training.worker JOB_DIR/spec.json`.

Events go to the original standard output, one JSON line each (see `spec.py`); everything else that would print
there (library prints, the Trainer's log lines) goes to stderr. Exit codes: 0 after "result" or "cancelled",
1 after "failed".
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TextIO

from tuneserve.engines.training.events import EventWriter, FailedEvent
from tuneserve.engines.training.spec import TrainingSpec

_MAX_REASON_CHARS = 2000


def main(argv: list[str]) -> int:
    writer = EventWriter(_take_event_stream())
    cancel = threading.Event()
    # NOTE: the handler only sets a flag; CancellationCallback stops the Trainer at its next step.
    signal.signal(signal.SIGTERM, lambda signum, frame: cancel.set())
    try:
        if len(argv) != 1:
            raise ValueError("usage: python -m tuneserve.engines.training.worker SPEC_PATH")
        spec_path = Path(argv[0])
        spec = TrainingSpec.load(spec_path)
        # NOTE: imported only now, after stdout is redirected, so that nothing torch or transformers print while
        # importing can land in the event stream, and a failing import is still reported as a "failed" event.
        from tuneserve.engines.training.pipeline import run_training

        outcome = run_training(spec, writer, cancel, scratch_dir=spec_path.parent)
    except Exception as error:
        traceback.print_exc()
        writer.write(FailedEvent(reason=_one_line(error)))
        return 1
    writer.write(outcome)
    return 0


def _take_event_stream() -> TextIO:
    """Keep the real stdout for events and point file descriptor 1 (print, C libraries) at stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(events_fd, "w", encoding="utf-8")


def _one_line(error: BaseException) -> str:
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return reason[:_MAX_REASON_CHARS]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
