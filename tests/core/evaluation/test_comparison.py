"""McNemar's exact test and the verdicts of Evaluate's comparison and of a job's baselines."""

from __future__ import annotations

import pytest

from tuneserve.core.evaluation.comparison import compare_pair, mcnemar
from tuneserve.core.evaluation.evaluator import EvaluationReport
from tuneserve.core.training import baselines


def report(model_id: str, accuracy: float, macro_f1: float) -> EvaluationReport:
    return EvaluationReport(
        model_id=model_id, model_version=1, dataset_id="ds", num_examples=10, accuracy=accuracy,
        macro_precision=macro_f1, macro_recall=macro_f1, macro_f1=macro_f1, weighted_precision=accuracy,
        weighted_recall=accuracy, weighted_f1=accuracy, per_class=[], labels=[], confusion_matrix=[],
        num_unknown_labels=0, duration_seconds=0.1,
    )


def test_mcnemar_counts_discordant_rows_and_tests_them_exactly() -> None:
    first = [True] * 8 + [False, True]
    second = [True, True] + [False] * 6 + [False, False]
    b, c, p = mcnemar(first, second)
    assert (b, c) == (7, 0)
    assert p == pytest.approx(2 * 0.5**7)  # two-sided binomial: both tails of 7 out of 7
    assert mcnemar([True, False], [True, False]) == (0, 0, 1.0)
    assert mcnemar([True, False, True, False], [False, True, False, True])[2] == pytest.approx(1.0)


def test_transfer_verdicts_follow_the_test() -> None:
    tuned, scratch = report("model-ft", 0.9, 0.9), report("model-s", 0.2, 0.15)
    helped = compare_pair(tuned, "finetuned", [True] * 9 + [False], scratch, "scratch", [False] * 8 + [True, True])
    assert helped.significant and helped.p_value < 0.05
    assert helped.verdict.startswith("transfer helped: the fine-tuned model model-ft v1 beats the scratch baseline")
    assert "macro F1 +75.0 points" in helped.verdict and f"p={helped.p_value:.3g}" in helped.verdict
    assert {d.metric: d.delta for d in helped.deltas}["accuracy"] == pytest.approx(0.7)

    close = compare_pair(tuned, "finetuned", [True, False] * 5, report("model-f", 0.5, 0.5), "frozen", [False, True] * 5)
    assert not close.significant
    assert close.verdict.startswith("fine-tuning the backbone did not help significantly (macro F1 +40.0 points")
    plain = compare_pair(tuned, "finetuned", [True] * 10, report("model-2", 0.0, 0.0), "finetuned", [False] * 10)
    assert plain.verdict.startswith("the fine-tuned model model-ft v1 beats the fine-tuned model model-2 v1")


def test_job_transfer_verdict_compares_validation_macro_f1() -> None:
    entries = [
        {"kind": "frozen", "validation_metrics": {"macro_f1": 0.915}},
        {"kind": "scratch", "validation_metrics": {"macro_f1": 0.40}},
    ]
    verdict = baselines.verdict({"macro_f1": 0.92}, entries)
    assert verdict == (
        "transfer helped: validation macro F1 0.9200 fine-tuned vs 0.4000 from scratch (+52.0 points); "
        "fine-tuning the backbone made no clear difference: validation macro F1 0.9200 fine-tuned vs 0.9150 with the "
        "backbone frozen (+0.5 points), within 1 point"
    )
    assert baselines.verdict({"macro_f1": 0.3}, entries[1:]).startswith("transfer hurt: ")
