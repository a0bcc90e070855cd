"""Two models evaluated on the same rows: per-metric deltas, and McNemar's exact test on their paired predictions with
the verdict it gives (`tuneserve.core.evaluation.verdict`: the same rule and sentence as a job's transfer verdict). The
verdict names the transfer question when a fine-tuned model meets one of its baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneserve.core.evaluation import verdict as rule

if TYPE_CHECKING:
    from tuneserve.core.evaluation.reports import EvaluationReport

METRICS = (
    "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1",
)


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
    only_first_correct: int   # rows the first model gets right and the compared model wrong
    only_second_correct: int
    significant: bool         # p_value < rule.ALPHA
    verdict: str
    test: str = rule.TEST


def compare_pair(
    first: EvaluationReport, first_kind: str, first_correct: Sequence[bool],
    second: EvaluationReport, second_kind: str, second_correct: Sequence[bool],
) -> Comparison:
    paired = rule.mcnemar(first_correct, second_correct)
    deltas = [MetricDelta(name, getattr(first, name) - getattr(second, name)) for name in METRICS]
    judged = rule.judge(
        rule.Side(rule.name(first_kind, first.model_id, first.model_version), first.macro_f1),
        rule.Side(rule.name(second_kind, second.model_id, second.model_version), second.macro_f1),
        paired,
        asked=rule.question(first_kind, second_kind),
    )
    return Comparison(
        second.model_id, second.model_version, deltas, judged.p_value, paired.b, paired.c, judged.significant,
        judged.text,
    )
