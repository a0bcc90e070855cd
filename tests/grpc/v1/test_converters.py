"""Worker events as WatchJob sends them: whatever a worker reported must convert, non-finite numbers included."""

from __future__ import annotations

import json
import math

from tuneserve.engines.training.events import CheckpointEvent, ProgressEvent
from tuneserve.grpc.v1.converters import event_to_pb
from tuneserve.types import JobEventRecord


def _record(line: str) -> JobEventRecord:
    """What the job manager stores for one worker line (the runner parses it with json.loads)."""
    data = json.loads(line)
    kind = data.pop("kind")
    return JobEventRecord("job-1", 1, 0.0, kind, data, data.pop("message", ""))


def test_a_diverged_trainings_nan_and_infinite_losses_convert() -> None:
    event = ProgressEvent(step=3, total_steps=9, epoch=0.3, eta_seconds=math.inf, train_loss=math.nan,
                          learning_rate=1e-3, samples_per_second=-math.inf)
    pb = event_to_pb(_record(event.to_json())).progress
    assert math.isnan(pb.train_loss) and pb.eta_seconds == math.inf and pb.samples_per_second == -math.inf
    assert pb.step == 3


def test_a_checkpoint_without_an_evaluation_has_no_metric() -> None:
    line = CheckpointEvent(step=40, is_best=False, metric=None, message="checkpoint at step 40").to_json()
    assert "metric" not in json.loads(line)
    pb = event_to_pb(_record(line))
    assert pb.checkpoint.step == 40 and pb.checkpoint.metric == 0.0 and pb.message == "checkpoint at step 40"
