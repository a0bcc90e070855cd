"""Two models evaluated on the same rows: per-metric deltas over their task's metrics, and the task's paired test
(`tuneserve.tasks`: McNemar for single-label, McNemar per label with Holm's correction for multi-label, Wilcoxon on
absolute errors for regression) with the verdict it gives (`tuneserve.core.evaluation.verdict`: the same rule and
sentence as a job's transfer verdict), quoting the task's headline metric. The verdict names the transfer question
when a fine-tuned model meets one of its baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tuneserve.core.evaluation import verdict as rule
from tuneserve.core.evaluation.reports import CLASSIFICATION_METRICS
from tuneserve.tasks import PairedTest, get_task

if TYPE_CHECKING:
    from tuneserve.core.evaluation.reports import EvaluationReport

METRICS = CLASSIFICATION_METRICS   # the single-label metrics (kept for callers of the name)


@dataclass(frozen=True)
class MetricDelta:
    metric: str
    delta: float              # the first model's value minus the compared model's


@dataclass(frozen=True)
class Comparison:
    model_id: str             # the compared model
    model_version: int
    deltas: list[MetricDelta]
    p_value: float
    only_first_correct: int   # rows the first model gets right (or closer) and the compared model does not
    only_second_correct: int
    significant: bool         # p_value < rule.ALPHA
    verdict: str
    test: str = rule.TEST     # mcnemar | mcnemar-holm | wilcoxon


def compare(
    first: EvaluationReport, first_kind: str, second: EvaluationReport, second_kind: str, paired: PairedTest
) -> Comparison:
    """`first` against `second` (both of the same task, on the same rows) given their paired test."""
    mine, theirs = first.figures(), second.figures()
    deltas = [MetricDelta(name, value - theirs[name]) for name, value in mine.items() if name in theirs]
    headline = get_task(first.task).default_metric
    judged = rule.judge_metric(
        rule.Side(rule.name(first_kind, first.model_id, first.model_version), mine.get(headline, 0.0)),
        rule.Side(rule.name(second_kind, second.model_id, second.model_version), theirs.get(headline, 0.0)),
        paired,
        metric=headline,
        asked=rule.question(first_kind, second_kind),
    )
    return Comparison(
        second.model_id, second.model_version, deltas, judged.p_value, paired.only_first_better,
        paired.only_second_better, judged.significant, judged.text, paired.test,
    )


def compare_pair(
    first: EvaluationReport, first_kind: str, first_correct: Sequence[bool],
    second: EvaluationReport, second_kind: str, second_correct: Sequence[bool],
) -> Comparison:
    """`compare` of two single-label models from which rows each got right (McNemar)."""
    if len(first_correct) != len(second_correct):
        raise ValueError("McNemar needs the two models' predictions on the same rows")
    outcomes = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    return compare(first, first_kind, second, second_kind, get_task(first.task).paired_test(*outcomes))
