"""Two models evaluated on the same rows: per-metric deltas and McNemar's exact test on their paired predictions.

McNemar looks only at the discordant rows: b where the first model is right and the second wrong, c the reverse.
Under "both are equally accurate" each discordant row is a fair coin, so p is the two-sided binomial test of b out of
b + c at 1/2 (exact: validation and test sets are small). The verdict follows the test, and names the transfer
question when a fine-tuned model meets one of its baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scipy.stats import binomtest

if TYPE_CHECKING:
    from tuneserve.core.evaluation.reports import EvaluationReport

ALPHA = 0.05
METRICS = (
    "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1",
)
_QUESTIONS = {"scratch": "transfer", "frozen": "fine-tuning the backbone"}


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
    significant: bool         # p_value < ALPHA
    verdict: str
    test: str = "mcnemar"


def mcnemar(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> tuple[int, int, float]:
    """(b, c, two-sided exact p) for paired correctness vectors of the same rows."""
    if len(first_correct) != len(second_correct):
        raise ValueError("McNemar needs the two models' predictions on the same rows")
    b = sum(1 for x, y in zip(first_correct, second_correct, strict=True) if x and not y)
    c = sum(1 for x, y in zip(first_correct, second_correct, strict=True) if y and not x)
    # NOTE: no discordant rows: the two models agree everywhere, nothing tells them apart.
    p = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return b, c, p


def compare_pair(
    first: EvaluationReport, first_kind: str, first_correct: Sequence[bool],
    second: EvaluationReport, second_kind: str, second_correct: Sequence[bool],
) -> Comparison:
    b, c, p = mcnemar(first_correct, second_correct)
    deltas = [MetricDelta(name, getattr(first, name) - getattr(second, name)) for name in METRICS]
    significant = p < ALPHA
    verdict = _verdict(first, first_kind, second, second_kind, b, c, p)
    return Comparison(second.model_id, second.model_version, deltas, p, b, c, significant, verdict)


def _verdict(
    first: EvaluationReport, first_kind: str, second: EvaluationReport, second_kind: str, b: int, c: int, p: float
) -> str:
    points = (first.macro_f1 - second.macro_f1) * 100
    evidence = (
        f"macro F1 {points:+.1f} points; right on {b} rows the other gets wrong, wrong on {c} it gets right; "
        f"McNemar p={p:.3g}"
    )
    one, other = _name(first, first_kind), _name(second, second_kind)
    # NOTE: against scratch the question is transfer itself; against the frozen probe, fine-tuning the backbone.
    what = _QUESTIONS.get(second_kind, "") if first_kind == "finetuned" else ""
    if p >= ALPHA:
        lead = f"{what} did not help significantly" if what else f"no significant difference between {one} and {other}"
        return f"{lead} ({evidence} >= {ALPHA})"
    if b > c:
        lead = f"{what} helped: {one} beats {other}" if what else f"{one} beats {other}"
    else:
        lead = f"{what} did not help: {other} beats {one}" if what else f"{other} beats {one}"
    return f"{lead} ({evidence})"


def _name(report: EvaluationReport, kind: str) -> str:
    what = "the fine-tuned model" if kind == "finetuned" else f"the {kind} baseline"
    return f"{what} {report.model_id} v{report.model_version}"
