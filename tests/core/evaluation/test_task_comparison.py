"""Evaluate's comparison for each task, with numbers worked out by hand: the task's metrics and deltas, its paired test
(McNemar per label with Holm's correction; Wilcoxon on absolute errors), and the verdict sentence quoting the task's
headline metric."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy.stats import wilcoxon

from tuneserve.core.evaluation import verdict
from tuneserve.core.evaluation.comparison import compare
from tuneserve.core.evaluation.reports import EvaluationReport
from tuneserve.tasks import TaskParams, get_task
from tuneserve.tasks.base import Target

LABELS = ["a", "b"]
# 20 rows: the first ten carry label a, the last ten label b
TRUTH: list[Target] = [["a"]] * 10 + [["b"]] * 10


def hot(rows: Sequence[Sequence[str]]) -> np.ndarray:
    """Multi-label scores that decide `rows` at the default threshold (0.9 chosen, 0.1 not)."""
    return np.array([[0.9 if label in row else 0.1 for label in LABELS] for row in rows], dtype=np.float32)


def report(task: str, model_id: str, scores: np.ndarray, targets: Sequence[Target], labels: list[str]) -> EvaluationReport:
    figures = get_task(task).report(scores, targets, labels, TaskParams(task=task))
    return EvaluationReport.of(task, figures, model_id=model_id, model_version=1, dataset_id="ds",
                               num_examples=len(targets), duration_seconds=0.1)


def outcomes(task: str, scores: np.ndarray, targets: Sequence[Target], labels: list[str]) -> np.ndarray:
    return get_task(task).outcomes(scores, targets, labels, TaskParams(task=task), LABELS)


def test_multi_label_comparison_tests_each_label_and_corrects_for_them() -> None:
    tuned_scores, scratch_scores = hot(TRUTH), hot([[]] * 10 + [["b"]] * 10)  # scratch never finds label a
    tuned = report("multi_label", "m-ft", tuned_scores, TRUTH, LABELS)
    scratch = report("multi_label", "m-s", scratch_scores, TRUTH, LABELS)
    assert scratch.metrics["micro_f1"] == pytest.approx(2 / 3) and scratch.metrics["subset_accuracy"] == 0.5
    assert scratch.macro_f1 == scratch.metrics["macro_f1"] and scratch.accuracy == 0.0  # no single-label accuracy
    assert [(c.label, c.support, c.recall) for c in scratch.per_class] == [("a", 10, 0.0), ("b", 10, 1.0)]
    paired = get_task("multi_label").paired_test(outcomes("multi_label", tuned_scores, TRUTH, LABELS),
                                                 outcomes("multi_label", scratch_scores, TRUTH, LABELS))
    # label a: 10 discordant rows, all the fine-tune's: p = 2 / 2**10; label b: none, p = 1. Holm: x2 for the smaller
    assert (paired.test, paired.p_value, paired.leader) == ("mcnemar-holm", pytest.approx(4 / 2**10), "first")
    assert (paired.only_first_better, paired.only_second_better) == (10, 0)

    c = compare(tuned, "finetuned", scratch, "scratch", paired)
    assert (c.test, c.significant, c.only_first_correct, c.only_second_correct) == ("mcnemar-holm", True, 10, 0)
    assert c.verdict == (
        "transfer helped: the fine-tuned model m-ft v1 beats the scratch baseline m-s v1 (micro F1 1.0000 vs 0.6667, "
        "+33.3 points; every label right on 10 rows where the other gets one wrong, the reverse on 0; McNemar per "
        "label, Holm-corrected p=0.00391 < 0.05)"
    )
    deltas = {d.metric: d.delta for d in c.deltas}
    assert deltas["micro_f1"] == pytest.approx(1 / 3) and deltas["hamming_loss"] == pytest.approx(-0.25)
    assert set(deltas) == set(tuned.metrics)


def test_multi_label_leader_is_the_label_with_the_smallest_corrected_p() -> None:
    # the second model is better on label b for 2 rows, the first on label a for 10: label a decides
    first = hot([["a"]] * 10 + [[]] * 2 + [["b"]] * 8)
    second = hot([[]] * 10 + [["b"]] * 10)
    paired = get_task("multi_label").paired_test(outcomes("multi_label", first, TRUTH, LABELS),
                                                 outcomes("multi_label", second, TRUTH, LABELS))
    assert paired.leader == "first" and paired.p_value == pytest.approx(4 / 2**10)
    assert (paired.only_first_better, paired.only_second_better) == (10, 2)
    # a label the second model predicts that the first does not know counts against the first
    unknown = get_task("multi_label").outcomes(hot(TRUTH)[:, :1], TRUTH, ["a"], TaskParams(), LABELS)
    assert unknown[:, 1].tolist() == [True] * 10 + [False] * 10


def test_no_significant_multi_label_difference() -> None:
    first, second = hot(TRUTH), hot([[]] * 3 + [["a"]] * 7 + [["b"]] * 10)
    paired = get_task("multi_label").paired_test(outcomes("multi_label", first, TRUTH, LABELS),
                                                 outcomes("multi_label", second, TRUTH, LABELS))
    c = compare(report("multi_label", "m-1", first, TRUTH, LABELS), "finetuned",
                report("multi_label", "m-2", second, TRUTH, LABELS), "finetuned", paired)
    assert not c.significant and c.p_value == pytest.approx(2 * 2 / 2**3)  # 3 discordant rows on a, Holm x2
    assert c.verdict.startswith("no significant difference between the fine-tuned model m-1 v1 and the fine-tuned "
                                "model m-2 v1 (micro F1 1.0000 vs 0.9")
    assert c.verdict.endswith("McNemar per label, Holm-corrected p=0.5 >= 0.05)")


VALUES: list[Target] = [float(v) for v in range(10)]


def test_regression_comparison_is_wilcoxon_on_absolute_errors_quoting_rmse() -> None:
    close = np.array([[v + 0.1 * (-1) ** i] for i, v in enumerate(VALUES)], dtype=np.float32)   # |error| 0.1
    far = np.array([[v + (1.0 + 0.1 * i)] for i, v in enumerate(VALUES)], dtype=np.float32)     # 1.0 .. 1.9
    tuned, scratch = report("regression", "r-ft", close, VALUES, []), report("regression", "r-s", far, VALUES, [])
    assert tuned.metrics["rmse"] == pytest.approx(0.1, abs=1e-6) and tuned.metrics["r2"] > 0.99
    assert scratch.metrics["mae"] == pytest.approx(1.45, abs=1e-5) and scratch.residuals["max_abs"] == pytest.approx(1.9)
    assert scratch.residuals["mean"] == pytest.approx(1.45, abs=1e-5) and len(scratch.points) == 10
    assert scratch.per_class == [] and scratch.labels == [] and scratch.macro_f1 == 0.0

    task = get_task("regression")
    first, second = outcomes("regression", close, VALUES, []), outcomes("regression", far, VALUES, [])
    paired = task.paired_test(first, second)
    assert (paired.test, paired.leader, paired.only_first_better, paired.only_second_better) == ("wilcoxon", "first",
                                                                                                  10, 0)
    assert paired.p_value == pytest.approx(wilcoxon(first, second).pvalue) == pytest.approx(2 / 2**10)

    c = compare(tuned, "finetuned", scratch, "frozen", paired)
    rmse = scratch.metrics["rmse"]
    assert c.verdict == (
        "fine-tuning the backbone helped: the fine-tuned model r-ft v1 beats the frozen baseline r-s v1 (RMSE 0.1000 "
        f"vs {rmse:.4f}, {0.1 - rmse:+.4f}; closer on 10 rows, farther on 0; Wilcoxon signed-rank on absolute errors "
        "p=0.00195 < 0.05)"
    )
    # lower RMSE wins: the same pair the other way round is "hurt"
    reverse = compare(scratch, "finetuned", tuned, "frozen", task.paired_test(second, first))
    assert reverse.verdict.startswith("fine-tuning the backbone hurt: the frozen baseline r-ft v1 beats the fine-tuned "
                                      "model r-s v1 (RMSE ")
    assert {d.metric: d.delta for d in c.deltas}["rmse"] == pytest.approx(0.1 - rmse, abs=1e-6)


def test_classification_reports_keep_their_fields_and_sentences() -> None:
    labels = ["neg", "pos"]
    truth: list[Target] = ["neg"] * 5 + ["pos"] * 5
    right = np.array([[0.9, 0.1]] * 5 + [[0.2, 0.8]] * 5, dtype=np.float32)
    wrong = np.array([[0.1, 0.9]] * 8 + [[0.2, 0.8]] * 2, dtype=np.float32)
    tuned, other = report("classification", "c-1", right, truth, labels), report("classification", "c-2", wrong, truth,
                                                                               labels)
    assert (tuned.accuracy, tuned.macro_f1, tuned.confusion_matrix) == (1.0, 1.0, [[5, 0], [0, 5]])
    assert tuned.figures() == tuned.metrics and list(tuned.metrics)[:4] == ["accuracy", "macro_precision",
                                                                            "macro_recall", "macro_f1"]
    task = get_task("classification")
    paired = task.paired_test(outcomes("classification", right, truth, labels),
                              outcomes("classification", wrong, truth, labels))
    c = compare(tuned, "finetuned", other, "scratch", paired)
    judged = verdict.judge(verdict.Side("the fine-tuned model c-1 v1", 1.0),
                           verdict.Side("the scratch baseline c-2 v1", other.macro_f1), verdict.Paired(5, 0),
                           asked="transfer")
    assert (c.test, c.verdict, c.p_value) == ("mcnemar", judged.text, judged.p_value)


def test_judge_metric_names_the_metric_and_its_units() -> None:
    one, other = verdict.Side("A", 0.8), verdict.Side("B", 0.7)
    text = verdict.judge_metric(one, other, verdict.NoCounts("x"), metric="micro_f1", scope="validation").text
    assert "(validation micro F1 0.8000 vs 0.7000, +10.0 points; no significance test possible: x;" in text
    text = verdict.judge_metric(one, other, verdict.NoCounts("x"), metric="mae").text
    assert "(MAE 0.8000 vs 0.7000, +0.1000; " in text
    assert verdict.Side("A", 0.8).macro_f1 == 0.8  # the historical name of the quoted figure
