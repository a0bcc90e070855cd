"""The paired tests the tasks use: McNemar's exact test, Holm's correction and the Wilcoxon signed-rank test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def mcnemar_p(only_first: int, only_second: int) -> float:
    """McNemar's exact two-sided p: the binomial test of the discordant counts at 1/2 (1 when there are none)."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    return float(stats.binomtest(min(only_first, only_second), n, 0.5).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return [float(p) for p in adjusted]


def wilcoxon_p(first: np.ndarray, second: np.ndarray) -> float:
    """The two-sided Wilcoxon signed-rank p of paired samples (1 when they never differ)."""
    differences = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    if not np.any(differences != 0):
        return 1.0
    return float(stats.wilcoxon(first, second, zero_method="wilcox").pvalue)


def leader(first_score: float, second_score: float) -> str:
    """"first" or "second": the side with the larger score ("" on a tie)."""
    if first_score == second_score:
        return ""
    return "first" if first_score > second_score else "second"


def signed_rank_leader(first: np.ndarray, second: np.ndarray) -> str:
    """The model with the smaller paired errors by the Wilcoxon statistic: the one whose rows of the smaller error
    have the larger rank sum of |difference| ("" on a tie)."""
    differences = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
    differences = differences[differences != 0]
    ranks = stats.rankdata(np.abs(differences))
    return leader(float(ranks[differences < 0].sum()), float(ranks[differences > 0].sum()))
