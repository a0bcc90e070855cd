"""Evaluate's comparison and a job's transfer verdict: both give the verdict of `tuneserve.core.evaluation.verdict`,
in the same words."""

from __future__ import annotations

import pytest

from tuneserve.core.evaluation import verdict
from tuneserve.core.evaluation.comparison import compare_pair
from tuneserve.core.evaluation.reports import EvaluationReport
from tuneserve.core.training import baselines
from tuneserve.tasks import get_task

CLASSIFICATION = get_task("classification")


def report(model_id: str, accuracy: float, macro_f1: float) -> EvaluationReport:
    return EvaluationReport(
        model_id=model_id, model_version=1, dataset_id="ds", num_examples=10, accuracy=accuracy,
        macro_precision=macro_f1, macro_recall=macro_f1, macro_f1=macro_f1, weighted_precision=accuracy,
        weighted_recall=accuracy, weighted_f1=accuracy, per_class=[], labels=[], confusion_matrix=[],
        num_unknown_labels=0, duration_seconds=0.1,
    )


def test_comparison_counts_discordant_rows_and_tests_them_exactly() -> None:
    tuned, other = report("model-ft", 0.9, 0.9), report("model-2", 0.2, 0.2)
    c = compare_pair(tuned, "finetuned", [True] * 8 + [False, True], other, "finetuned",
                     [True, True] + [False] * 6 + [False, False])
    assert (c.only_first_correct, c.only_second_correct) == (7, 0)
    assert c.p_value == pytest.approx(2 * 0.5**7) and c.significant and c.test == "mcnemar"
    same = compare_pair(tuned, "finetuned", [True, False], other, "finetuned", [True, False])
    assert (same.only_first_correct, same.only_second_correct, same.p_value) == (0, 0, 1.0) and not same.significant


def test_transfer_verdicts_follow_the_test() -> None:
    tuned, scratch = report("model-ft", 0.9, 0.9), report("model-s", 0.2, 0.15)
    helped = compare_pair(tuned, "finetuned", [True] * 9 + [False], scratch, "scratch", [False] * 8 + [True, True])
    assert helped.significant and helped.p_value < 0.05
    assert helped.verdict.startswith("transfer helped: the fine-tuned model model-ft v1 beats the scratch baseline")
    assert "macro F1 0.9000 vs 0.1500, +75.0 points" in helped.verdict and f"p={helped.p_value:.3g}" in helped.verdict
    assert {d.metric: d.delta for d in helped.deltas}["accuracy"] == pytest.approx(0.7)

    close = compare_pair(tuned, "finetuned", [True, False] * 5, report("model-f", 0.5, 0.5), "frozen", [False, True] * 5)
    assert not close.significant
    assert close.verdict.startswith(
        "fine-tuning the backbone made no significant difference: the fine-tuned model model-ft v1 vs the frozen "
        "baseline model-f v1 (macro F1 0.9000 vs 0.5000, +40.0 points"
    )
    plain = compare_pair(tuned, "finetuned", [True] * 10, report("model-2", 0.0, 0.0), "finetuned", [False] * 10)
    assert plain.verdict.startswith("the fine-tuned model model-ft v1 beats the fine-tuned model model-2 v1")


def test_comparison_verdict_is_the_shared_rule() -> None:
    tuned, scratch = report("model-ft", 0.9, 0.9), report("model-s", 0.2, 0.15)
    first, second = [True] * 9 + [False], [False] * 8 + [True, True]
    c = compare_pair(tuned, "finetuned", first, scratch, "scratch", second)
    judged = verdict.judge(
        verdict.Side("the fine-tuned model model-ft v1", 0.9), verdict.Side("the scratch baseline model-s v1", 0.15),
        verdict.Paired(8, 1), asked="transfer",
    )
    assert (c.verdict, c.p_value, c.significant) == (judged.text, judged.p_value, judged.significant)




def result(rows: int, accuracy: float, macro_f1: float) -> dict[str, object]:
    return {"validation_examples": rows, "validation_metrics": {"macro_f1": macro_f1, "accuracy": accuracy}}


def entry(kind: str, accuracy: float, macro_f1: float) -> dict[str, object]:
    return baselines.entry(kind, f"model-{kind}", {"validation_metrics": {"macro_f1": macro_f1, "accuracy": accuracy},
                                                   "train_seconds": 1.0})


def test_job_transfer_verdict_tests_the_validation_counts() -> None:
    entries = [entry("frozen", 0.9, 0.915), entry("scratch", 0.4, 0.40)]
    text = baselines.verdict(result(200, 0.92, 0.92), entries, CLASSIFICATION)
    scratch, frozen = text.split("; fine-tuning the backbone")
    # scratch first, then the frozen probe, each one sentence of the shared rule
    assert scratch == verdict.judge(
        verdict.Side("the fine-tuned model", 0.92), verdict.Side("the scratch baseline model-scratch", 0.40),
        verdict.Counts(200, 184, 80), asked="transfer", metric="validation macro F1",
    ).text
    assert scratch.startswith(
        "transfer helped: the fine-tuned model beats the scratch baseline model-scratch (validation macro F1 0.9200 vs "
        "0.4000, +52.0 points; right on 184 vs 80 of the same 200 rows; McNemar p <= "
    )
    assert frozen.startswith(
        " made no significant difference: the fine-tuned model vs the frozen baseline model-frozen (validation macro F1 "
        "0.9200 vs 0.9150, +0.5 points; right on 184 vs 180 of the same 200 rows; McNemar p >= "
    )
    assert baselines.verdict(result(200, 0.1, 0.1), entries[1:], CLASSIFICATION).startswith(
        "transfer hurt: the scratch baseline model-scratch beats the fine-tuned model"
    )
    assert "fine-tuning the backbone" not in baselines.verdict(result(200, 0.1, 0.1), entries[1:], CLASSIFICATION)


def test_job_transfer_verdict_without_counts_says_no_test_was_possible() -> None:
    no_rows = baselines.verdict(
        {"validation_metrics": {"macro_f1": 0.92, "accuracy": 0.92}}, [entry("scratch", 0.4, 0.4)], CLASSIFICATION,
    )
    assert no_rows.startswith("whether transfer helped is undetermined: the fine-tuned model vs the scratch baseline")
    assert "+52.0 points; no significance test possible: the result does not give the number of validation rows" in no_rows
    no_accuracy = baselines.verdict({"validation_examples": 200, "validation_metrics": {"macro_f1": 0.92}},
                                    [entry("scratch", 0.4, 0.4)], CLASSIFICATION)
    assert "no significance test possible: the results do not give both runs' validation accuracy" in no_accuracy
    other_rows = baselines.verdict(result(200, 0.92, 0.92), [entry("scratch", 1 / 3, 0.4)], CLASSIFICATION)
    assert "the validation accuracy figures are not counts of the same 200 rows" in other_rows
