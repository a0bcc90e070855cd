"""Worker events as WatchJob sends them: whatever a worker reported must convert, non-finite numbers included; an
evaluation report of each task with its own fields."""

from __future__ import annotations

import json
import math

from tuneserve.core.evaluation.comparison import Comparison
from tuneserve.core.evaluation.evaluator import ComparisonResult
from tuneserve.core.evaluation.reports import EvaluationReport
from tuneserve.engines.training.events import CheckpointEvent, ProgressEvent
from tuneserve.grpc.v1.converters import comparison_result_to_pb, evaluation_to_pb, event_to_pb
from tuneserve.tasks.base import TaskReport
from tuneserve.types import JobEventRecord
from tuneserve_client.proto.tuneserve.v1 import common_pb2


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


def test_an_evaluation_report_carries_its_task_metrics_residuals_and_points() -> None:
    residuals = {"mean": 0.1, "std": 0.2, "median_abs": 0.15, "p90_abs": 0.3, "max_abs": 0.5}
    figures = TaskReport({"rmse": 0.25, "spearman": 0.9}, residuals=residuals, points=[(1.0, 1.5), (2.0, 1.75)])
    report = EvaluationReport.of("regression", figures, model_id="m", model_version=2, dataset_id="d",
                                 num_examples=2, duration_seconds=0.5)
    pb = evaluation_to_pb(report).report
    assert pb.task == common_pb2.TASK_REGRESSION and dict(pb.metrics) == {"rmse": 0.25, "spearman": 0.9}
    assert pb.residuals.p90_abs == 0.3 and [(p.true_value, p.predicted) for p in pb.points] == [(1.0, 1.5), (2.0, 1.75)]
    assert pb.macro_f1 == 0.0 and not pb.per_class

    comparison = Comparison("m2", 1, [], 0.01, 9, 1, True, "r-ft beats r-s", "wilcoxon")
    response = comparison_result_to_pb(ComparisonResult(report, [report], [comparison]))
    assert response.comparisons[0].test == "wilcoxon" and response.compared[0].task == common_pb2.TASK_REGRESSION
    classification = EvaluationReport.of("classification", TaskReport({"accuracy": 1.0}), model_id="m", model_version=1,
                                         dataset_id="d", num_examples=1, duration_seconds=0.1)
    pb = evaluation_to_pb(classification).report
    assert pb.task == common_pb2.TASK_CLASSIFICATION and not pb.HasField("residuals") and pb.accuracy == 1.0
