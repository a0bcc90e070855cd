"""The one rule for "did transfer help": McNemar's exact test on paired predictions, bounded when a job only knows how
many rows each model got right, and the one sentence both the job result and Evaluate print."""

from __future__ import annotations

import itertools

import pytest
from scipy.stats import binomtest

from tuneserve.core.evaluation import verdict
from tuneserve.core.evaluation.verdict import ALPHA, Counts, NoCounts, Paired, Side, judge

TUNED, SCRATCH = Side("the fine-tuned model", 0.9), Side("the scratch baseline model-s", 0.6)


@pytest.mark.parametrize(("b", "c"), [(7, 0), (0, 3), (25, 6), (10, 3), (5, 5), (100, 80), (3, 1), (0, 0), (1, 0)])
def test_p_value_is_the_exact_two_sided_binomial_test(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert verdict.p_value(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_counts_discordant_rows() -> None:
    assert verdict.mcnemar([True, True, False, False, True], [True, False, True, False, False]) == Paired(2, 1)
    with pytest.raises(ValueError, match="same rows"):
        verdict.mcnemar([True], [True, False])


@pytest.mark.parametrize(("rows", "first", "second"), [(6, 4, 2), (6, 3, 3), (7, 6, 1), (5, 5, 0), (6, 2, 5)])
def test_p_range_covers_exactly_the_pairings_the_counts_allow(rows: int, first: int, second: int) -> None:
    # every way two models with these counts can be right or wrong on the same rows
    ps = set()
    for a in itertools.combinations(range(rows), first):
        for b in itertools.combinations(range(rows), second):
            only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
            ps.add(verdict.p_value(only_a, only_b))
    low, high = verdict.p_range(Counts(rows, first, second))
    assert (low, high) == (pytest.approx(min(ps)), pytest.approx(max(ps)))


def test_p_range_refuses_counts_that_do_not_fit_the_rows() -> None:
    with pytest.raises(ValueError):
        verdict.p_range(Counts(10, 11, 3))


def test_paired_verdicts_follow_the_test_and_name_the_question() -> None:
    helped = judge(TUNED, SCRATCH, Paired(9, 1), asked="transfer")
    assert helped.outcome == "first" and helped.significant and helped.p_value < ALPHA
    assert helped.text == (
        "transfer helped: the fine-tuned model beats the scratch baseline model-s (macro F1 0.9000 vs 0.6000, "
        f"+30.0 points; right on 9 rows the other gets wrong, wrong on 1 it gets right; McNemar p={helped.p_value:.3g} "
        "< 0.05)"
    )
    hurt = judge(TUNED, SCRATCH, Paired(0, 8), asked="transfer")
    assert hurt.outcome == "second"
    assert hurt.text.startswith("transfer hurt: the scratch baseline model-s beats the fine-tuned model (macro F1")
    # NOTE: a large macro-F1 gap is no finding without the test behind it
    close = judge(TUNED, SCRATCH, Paired(4, 2), asked="fine-tuning the backbone")
    assert close.outcome == "no significant difference" and not close.significant
    assert close.text.startswith("fine-tuning the backbone made no significant difference: the fine-tuned model vs ")
    assert close.text.endswith(f"McNemar p={close.p_value:.3g} >= 0.05)")


def test_without_a_question_it_says_which_model_is_better() -> None:
    one, other = Side("the fine-tuned model m-1 v2", 0.5), Side("the fine-tuned model m-1 v1", 0.4)
    assert judge(one, other, Paired(8, 0)).text.startswith(f"{one.name} beats {other.name} (")
    assert judge(one, other, Paired(0, 8)).text.startswith(f"{other.name} beats {one.name} (")
    assert judge(one, other, Paired(1, 1)).text.startswith(f"no significant difference between {one.name} and ")


def test_counts_decide_when_every_pairing_agrees() -> None:
    # 394 vs 312 right of 400: at most 6 rows the better one gets wrong, so the gap cannot be chance
    decided = judge(TUNED, SCRATCH, Counts(400, 394, 312), asked="transfer", metric="validation macro F1")
    assert decided.outcome == "first" and decided.p_value == verdict.p_range(Counts(400, 394, 312))[1] < ALPHA
    assert decided.text.startswith("transfer helped: the fine-tuned model beats the scratch baseline model-s "
                                   "(validation macro F1 0.9000 vs 0.6000, +30.0 points; right on 394 vs 312 of the "
                                   "same 400 rows; McNemar p <= ")
    assert decided.text.endswith("< 0.05 whichever rows each gets wrong)")
    assert judge(TUNED, SCRATCH, Counts(400, 312, 394), asked="transfer").outcome == "second"
    same = judge(TUNED, SCRATCH, Counts(40, 36, 34), asked="transfer")
    assert same.outcome == "no significant difference" and same.p_value >= ALPHA
    assert same.text.endswith(f"McNemar p >= {same.p_value:.3g} >= 0.05 whichever rows each gets wrong)")


def test_equally_many_right_is_no_difference_at_p_1() -> None:
    tied = judge(TUNED, SCRATCH, Counts(50, 40, 40), asked="transfer")
    assert (tied.outcome, tied.p_value) == ("no significant difference", 1.0)
    assert tied.text.endswith("right on 40 vs 40 of the same 50 rows; McNemar p = 1)")


def test_counts_that_pairing_could_swing_are_undetermined() -> None:
    low, high = verdict.p_range(Counts(100, 90, 84))
    assert low < ALPHA <= high
    undetermined = judge(TUNED, SCRATCH, Counts(100, 90, 84), asked="transfer")
    assert undetermined.outcome == "undetermined" and not undetermined.significant
    assert undetermined.text.startswith(
        "whether transfer helped is undetermined: the fine-tuned model vs the scratch baseline model-s"
    )
    assert f"McNemar p between {low:.3g} and {high:.3g} depending on which rows each gets wrong" in undetermined.text
    assert "Evaluate with compare" in undetermined.text


def test_no_counts_states_the_figures_and_that_no_test_was_possible() -> None:
    untested = judge(TUNED, SCRATCH, NoCounts("no accuracy"), asked="transfer")
    assert untested.outcome == "undetermined" and untested.p_value == 1.0
    assert untested.text == (
        "whether transfer helped is undetermined: the fine-tuned model vs the scratch baseline model-s (macro F1 "
        "0.9000 vs 0.6000, +30.0 points; no significance test possible: no accuracy; Evaluate with compare tests the "
        "models' paired predictions)"
    )


def test_questions_names_and_right_counts() -> None:
    assert verdict.question("finetuned", "scratch") == "transfer"
    assert verdict.question("finetuned", "frozen") == "fine-tuning the backbone"
    assert verdict.question("finetuned", "finetuned") == verdict.question("scratch", "frozen") == ""
    assert verdict.name("finetuned") == "the fine-tuned model"
    assert verdict.name("frozen", "model-f") == "the frozen baseline model-f"
    assert verdict.name("scratch", "model-s", 3) == "the scratch baseline model-s v3"
    assert verdict.right_count(7, 5 / 7) == 5 and verdict.right_count(400, 0.985) == 394
    assert verdict.right_count(7, 0.5) is None           # not a count of 7 rows
    assert verdict.right_count(0, 1.0) is None and verdict.right_count(10, float("nan")) is None
