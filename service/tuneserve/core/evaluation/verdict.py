"""Did transfer help? One rule, and one sentence for it, shared by a job's `transfer_verdict` and Evaluate's comparison
`verdict`.

The rule: McNemar's exact test on the two models' correctness over the same rows. Only the discordant rows count: b
where the first model is right and the second wrong, c the reverse. Under "both are equally accurate" each is a fair
coin, so p is the two-sided binomial test of b out of b + c at 1/2 (exact: validation and test sets are small).

- p < ALPHA (0.05) and b > c: the first model is better ("transfer helped", "fine-tuning the backbone helped");
- p < ALPHA and c > b: the second is ("... hurt");
- p >= ALPHA: "no significant difference", whatever the size of the gap.

The test decides on correctness (accuracy); the sentence also gives the macro-F1 figures and their difference in
points, which say how large the gap is. There is no margin of its own: a gap is a finding only when it is significant.

Evaluate has each row's predictions, so b and c are known (`Paired`). A job's result has aggregate validation figures
only: the worker records no per-row predictions, just how many of the same N validation rows each run got right
(`Counts`; the baselines run the job's own validation split). Those fix b - c but not b + c, which is bounded: the
smaller of b and c lies between 0 and min(fewer right, N - more right). p is computed for every pairing in that range:
when all of them fall on the same side of ALPHA the verdict is the same whatever the pairing (and the sentence gives
the bound), otherwise it is "undetermined", with the range of p and a pointer to Evaluate with compare. A result that
does not give the counts at all (`NoCounts`) is also "undetermined", with the figures and why no test was possible.
(Every run picks its best checkpoint on those same validation rows, so a job's verdict is a little optimistic for all
of them; Evaluate on held-out rows is the clean test.)

The sentence (`judge`), with the question ("transfer" against scratch, "fine-tuning the backbone" against frozen):

    transfer helped: A beats B (FIGURES; TEST)
    transfer hurt: B beats A (FIGURES; TEST)
    transfer made no significant difference: A vs B (FIGURES; TEST)
    whether transfer helped is undetermined: A vs B (FIGURES; TEST)

and between other models "A beats B", "B beats A", "no significant difference between A and B". FIGURES is
"macro F1 0.9200 vs 0.4000, +52.0 points" ("validation macro F1" in a job); TEST is "right on b rows the other gets
wrong, wrong on c it gets right; McNemar p=P < 0.05" (Paired), "right on 184 vs 80 of the same 200 rows; McNemar p <=
P < 0.05 whichever rows each gets wrong" (Counts), the range of p, or why no test was possible.

Other tasks (`tuneserve.tasks`) bring their own paired test as a `PairedTest`, the same rule applied to its p and the
side it favours (`leader`): multi-label, McNemar on each label's decisions with Holm's correction ("every label right
on b rows where the other gets one wrong, the reverse on c; McNemar per label, Holm-corrected p=P < 0.05"; the label
with the smallest corrected p says which model leads); regression, Wilcoxon's signed-rank test on the paired absolute
errors ("closer on b rows, farther on c; Wilcoxon signed-rank on absolute errors p=P < 0.05"; the signed rank sums say
which). `judge_metric` quotes the task's headline metric by its code name: "micro F1 0.8000 vs 0.6000, +20.0 points",
"RMSE 0.4100 vs 0.9000, -0.4900" (a gap in the target's units, not points). A single-label `PairedTest` is judged as
`Paired`, in the same words as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import binom

from tuneserve.tasks.base import PairedTest

ALPHA = 0.05
TEST = "mcnemar"
# NOTE: against scratch the question is transfer itself; against the frozen probe, fine-tuning the backbone.
QUESTIONS = {"scratch": "transfer", "frozen": "fine-tuning the backbone"}
_PAIR_TEST_HINT = "Evaluate with compare tests the models' paired predictions"

# How a sentence names a task's metric; those in UNIT_METRICS are in the target's units, the rest shares (points).
METRIC_WORDS = {
    "accuracy": "accuracy", "macro_f1": "macro F1", "weighted_f1": "weighted F1", "micro_f1": "micro F1",
    "samples_f1": "samples F1", "subset_accuracy": "subset accuracy", "hamming_loss": "Hamming loss", "rmse": "RMSE",
    "mae": "MAE", "r2": "R²", "pearson": "Pearson r", "spearman": "Spearman ρ",
    "entity_f1": "entity F1", "entity_precision": "entity precision", "entity_recall": "entity recall",
    "token_accuracy": "token accuracy",
}
UNIT_METRICS = frozenset({"rmse", "mae"})
# The tests of tuneserve.tasks besides McNemar's: what their counts are (b: the first model, c: the second) and
# the test's name in a sentence.
TESTS = {
    "mcnemar-holm": (
        "every label right on {b} rows where the other gets one wrong, the reverse on {c}",
        "McNemar per label, Holm-corrected",
    ),
    "wilcoxon": ("closer on {b} rows, farther on {c}", "Wilcoxon signed-rank on absolute errors"),
    "randomization": (
        "higher sentence entity F1 on {b} rows, lower on {c}", "approximate randomization on entity F1",
    ),
}

Outcome = Literal["first", "second", "no significant difference", "undetermined"]


@dataclass(frozen=True)
class Side:
    name: str                 # as the sentence names it, e.g. "the scratch baseline model-1 v1"
    value: float              # the figure the sentence quotes: macro F1 unless `judge` is told another metric

    @property
    def macro_f1(self) -> float:
        return self.value


@dataclass(frozen=True)
class Paired:
    """The discordant rows of paired predictions: b only the first model gets right, c only the second."""

    b: int
    c: int


@dataclass(frozen=True)
class Counts:
    """Aggregates only: how many of the same `rows` each model got right."""

    rows: int
    first_right: int
    second_right: int


@dataclass(frozen=True)
class NoCounts:
    reason: str               # why no test was possible, e.g. "the result does not say how many rows each got right"


Evidence = Paired | Counts | NoCounts | PairedTest   # PairedTest: a task's own paired test (tuneserve.tasks)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome          # "first" / "second": that model is significantly better
    p_value: float            # exact with Paired; with Counts the bound the outcome rests on (the upper end when
                              # undetermined); 1.0 with NoCounts
    text: str

    @property
    def significant(self) -> bool:
        return self.outcome in ("first", "second")


def mcnemar(first_correct: Sequence[bool], second_correct: Sequence[bool]) -> Paired:
    """The discordant counts of paired correctness vectors of the same rows."""
    if len(first_correct) != len(second_correct):
        raise ValueError("McNemar needs the two models' predictions on the same rows")
    pairs = list(zip(first_correct, second_correct, strict=True))
    return Paired(sum(1 for x, y in pairs if x and not y), sum(1 for x, y in pairs if y and not x))


def p_value(b: int, c: int) -> float:
    """McNemar's exact two-sided p: the binomial test of b out of b + c at 1/2."""
    return float(_p(np.array([min(b, c)]), abs(b - c))[0])


def p_range(counts: Counts) -> tuple[float, float]:
    """The lowest and highest McNemar p over every pairing of rows the counts allow."""
    more, fewer = max(counts.first_right, counts.second_right), min(counts.first_right, counts.second_right)
    if not 0 <= fewer <= more <= counts.rows:
        raise ValueError(f"{counts.first_right} and {counts.second_right} right of {counts.rows} rows")
    # NOTE: the smaller discordant count m: both-right rows = fewer - m >= 0, both-wrong rows = rows - more - m >= 0.
    # p is not monotone in m (the binomial is discrete), hence every m.
    p = _p(np.arange(min(fewer, counts.rows - more) + 1), more - fewer)
    return float(p.min()), float(p.max())


def question(first_kind: str, second_kind: str) -> str:
    """The question a comparison answers: "transfer" for a fine-tune against scratch, "fine-tuning the backbone"
    against the frozen probe, "" otherwise."""
    return QUESTIONS.get(second_kind, "") if first_kind == "finetuned" else ""


def name(kind: str, model_id: str = "", version: int = 0) -> str:
    what = "the fine-tuned model" if kind == "finetuned" else f"the {kind} baseline"
    return " ".join(part for part in (what, model_id, f"v{version}" if version else "") if part)


def right_count(rows: int, accuracy: float) -> int | None:
    """How many of `rows` an `accuracy` means were right; None when it fits no whole number of them (the figures are
    not of those rows)."""
    right = accuracy * rows
    if rows <= 0 or not math.isfinite(right) or abs(right - round(right)) > 1e-6:
        return None
    return round(right) if 0 <= round(right) <= rows else None


def judge(
    first: Side, second: Side, evidence: Evidence, *, asked: str = "", metric: str = "macro F1", points: bool = True
) -> Verdict:
    """The verdict on `first` against `second` and its sentence. `asked` is the question (see `question`); `metric`
    names the figures ("validation macro F1" in a job); `points`: their gap reads in points (x100), else as a plain
    difference in the metric's units (RMSE)."""
    gap = f"{(first.value - second.value) * 100:+.1f} points" if points else f"{first.value - second.value:+.4f}"
    figures = f"{metric} {first.value:.4f} vs {second.value:.4f}, {gap}"
    outcome, p, test = _decide(evidence)
    return Verdict(outcome, p, f"{_lead(outcome, asked, first.name, second.name)} ({figures}; {test})")


def judge_metric(
    first: Side, second: Side, evidence: Evidence, *, metric: str, asked: str = "", scope: str = ""
) -> Verdict:
    """`judge` with the figures of a task's metric named as the code names it (macro_f1, micro_f1, rmse, ...);
    `scope` ("validation" in a job) goes before the metric's name."""
    words = " ".join(part for part in (scope, METRIC_WORDS.get(metric, metric)) if part)
    return judge(first, second, evidence, asked=asked, metric=words, points=metric not in UNIT_METRICS)


def _decide(evidence: Evidence) -> tuple[Outcome, float, str]:
    if isinstance(evidence, PairedTest):
        return _decide_test(evidence)
    if isinstance(evidence, Paired):
        b, c = evidence.b, evidence.c
        p = p_value(b, c)
        test = f"right on {b} rows the other gets wrong, wrong on {c} it gets right; McNemar p={p:.3g}"
        if p >= ALPHA:
            return "no significant difference", p, f"{test} >= {ALPHA}"
        return ("first" if b > c else "second"), p, f"{test} < {ALPHA}"
    if isinstance(evidence, Counts):
        low, high = p_range(evidence)
        right = f"right on {evidence.first_right} vs {evidence.second_right} of the same {evidence.rows} rows"
        if high < ALPHA:
            better: Outcome = "first" if evidence.first_right > evidence.second_right else "second"
            return better, high, f"{right}; McNemar p <= {high:.3g} < {ALPHA} whichever rows each gets wrong"
        if low >= 1:  # NOTE: equally many right: p = 1 for every pairing
            return "no significant difference", low, f"{right}; McNemar p = 1"
        if low >= ALPHA:
            return "no significant difference", low, (
                f"{right}; McNemar p >= {low:.3g} >= {ALPHA} whichever rows each gets wrong"
            )
        return "undetermined", high, (
            f"{right}; McNemar p between {low:.3g} and {high:.3g} depending on which rows each gets wrong, which the "
            f"job does not record: {_PAIR_TEST_HINT}"
        )
    return "undetermined", 1.0, f"no significance test possible: {evidence.reason}; {_PAIR_TEST_HINT}"


def _decide_test(test: PairedTest) -> tuple[Outcome, float, str]:
    """A task's paired test: McNemar's as `Paired` (the same p and words); any other by its own counts and name."""
    if test.test == TEST:
        return _decide(Paired(test.only_first_better, test.only_second_better))
    counts, title = TESTS.get(test.test, ("better on {b} rows, worse on {c}", test.test))
    stated = f"{counts.format(b=test.only_first_better, c=test.only_second_better)}; {title} p={test.p_value:.3g}"
    if test.p_value >= ALPHA or not test.leader:
        return "no significant difference", test.p_value, f"{stated} >= {ALPHA}" if test.p_value >= ALPHA else stated
    return ("first" if test.leader == "first" else "second"), test.p_value, f"{stated} < {ALPHA}"


def _lead(outcome: Outcome, asked: str, one: str, other: str) -> str:
    if asked:
        return {
            "first": f"{asked} helped: {one} beats {other}",
            "second": f"{asked} hurt: {other} beats {one}",
            "no significant difference": f"{asked} made no significant difference: {one} vs {other}",
            "undetermined": f"whether {asked} helped is undetermined: {one} vs {other}",
        }[outcome]
    return {
        "first": f"{one} beats {other}",
        "second": f"{other} beats {one}",
        "no significant difference": f"no significant difference between {one} and {other}",
        "undetermined": f"undetermined: {one} vs {other}",
    }[outcome]


def _p(smaller: np.ndarray, gap: int) -> np.ndarray:
    """Two-sided exact p for discordant counts (m + gap, m), each m in `smaller`: at 1/2 the binomial is symmetric,
    so p = 2 P(X <= m), X ~ Bin(2m + gap, 1/2), capped at 1 (no discordant rows: p = 1)."""
    return np.minimum(1.0, 2.0 * np.asarray(binom.cdf(smaller, 2 * smaller + gap, 0.5), dtype=np.float64))

