"""The over-/under-fitting rule: each branch, in order, with the numbers in its explanation."""

from __future__ import annotations

from tuneserve.engines.training.callbacks import CurvePoint
from tuneserve.engines.training.data import Example
from tuneserve.engines.training.diagnostics import diagnose, train_sample


def curve(*losses: tuple[float, float]) -> list[CurvePoint]:
    """(train loss, validation loss) per evaluation, 10 steps apart."""
    return [CurvePoint(step=10 * (i + 1), epoch=i + 1.0, train_loss=t, validation_loss=v) for i, (t, v) in enumerate(losses)]


FLAT = curve((0.9, 0.5), (0.5, 0.4), (0.3, 0.42))


def test_good_fit() -> None:
    fit = diagnose(0.97, 0.93, FLAT, 100)
    assert fit.verdict == "good_fit"
    assert fit.train_validation_gap == 0.97 - 0.93
    assert fit.rule.startswith("train macro F1 0.9700 (best checkpoint, 100 training rows) vs validation 0.9300, gap +0.0400")


def test_underfitting_comes_first() -> None:
    fit = diagnose(0.55, 0.20, FLAT, 100)
    assert fit.verdict == "underfitting"
    assert fit.rule.endswith("train macro F1 < 0.7")


def test_overfitting_by_the_gap() -> None:
    fit = diagnose(1.0, 0.85, FLAT, 100)
    assert fit.verdict == "overfitting"
    assert "gap +0.1500: gap > 0.1" in fit.rule


def test_overfitting_by_a_rising_validation_loss_while_train_loss_falls() -> None:
    fit = diagnose(0.99, 0.95, curve((0.9, 0.5), (0.4, 0.30), (0.1, 0.45)), 100)
    assert fit.verdict == "overfitting"
    assert "validation loss rose from 0.3000 (step 20) to 0.4500 (step 30, +50% > 20%)" in fit.rule
    assert "train loss fell from 0.4000 to 0.1000" in fit.rule
    # the same rise while the train loss rose too is not memorisation: it is noise (or a too high learning rate)
    assert diagnose(0.99, 0.95, curve((0.9, 0.5), (0.4, 0.30), (0.5, 0.45)), 100).verdict == "good_fit"


def test_train_sample_is_seeded_and_capped() -> None:
    rows = [Example(str(i), "a") for i in range(1000)]
    assert train_sample(rows, 42) == train_sample(rows, 42)
    assert len(train_sample(rows, 42)) == 512 and train_sample(rows[:10], 42) == rows[:10]
