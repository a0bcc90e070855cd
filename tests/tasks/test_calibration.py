"""Temperature scaling, Platt scaling and ECE on controlled data: an overconfident model is softened, the NLL drops,
the argmax and ranking stay; a multi-label model shifted as `pos_weight` shifts it is brought back by a bias per label
where a temperature cannot; ECE matches a hand-computed value; the consistency test passes calibrated scores at its
level and fails overconfident ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tuneserve.engines.training.calibrate import carried
from tuneserve.tasks import TaskParams
from tuneserve.tasks.calibration import (
    binary_nll,
    consistency,
    expected_calibration_error,
    fit_binary_platt,
    fit_softmax_temperature,
    logit_scale,
    reliability,
    sigmoid,
    softmax,
    softmax_nll,
)


def _overconfident(n: int = 2000, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax at T=1 is well calibrated by construction, then multiplied by 4: overconfident."""
    rng = np.random.default_rng(seed)
    calibrated = rng.normal(size=(n, classes)) * 1.5
    targets = np.array([rng.choice(classes, p=p) for p in softmax(calibrated)])
    return calibrated * 4.0, targets


def test_temperature_softens_an_overconfident_model_and_lowers_its_nll() -> None:
    logits, targets = _overconfident()
    t = fit_softmax_temperature(logits, targets)
    assert t == pytest.approx(4.0, rel=0.15)
    assert softmax_nll(logits, targets, t) < softmax_nll(logits, targets) - 0.1
    before = expected_calibration_error(softmax(logits).max(1), softmax(logits).argmax(1) == targets)
    after = expected_calibration_error(softmax(logits / t).max(1), softmax(logits / t).argmax(1) == targets)
    assert after < before / 2
    assert after < 0.05
    assert (softmax(logits / t).argmax(1) == softmax(logits).argmax(1)).all()


def _shifted(n: int = 3000, seed: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multi-label logits calibrated by construction (rare labels), then shifted up by log(negatives / positives) per
    label: what training with `pos_weight` does to a model's sigmoid."""
    rng = np.random.default_rng(seed)
    calibrated = rng.normal(-3.0, 2.0, size=(n, 4)) + np.array([0.0, 0.5, -0.5, 1.0])
    targets = (rng.random((n, 4)) < sigmoid(calibrated)).astype(np.float64)
    shift = np.log((1 - targets.mean(axis=0)) / targets.mean(axis=0))
    return calibrated + shift, targets, shift


def _best_temperatures(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Temperature scaling alone, per label, by a fine grid over T in [0.05, 20]."""
    grid = np.exp(np.linspace(-3.0, 3.0, 601))
    return np.array([grid[np.argmin([binary_nll(logits[:, j], targets[:, j], t) for t in grid])]
                     for j in range(logits.shape[1])])


def test_platt_undoes_a_pos_weight_shift_that_a_temperature_cannot() -> None:
    logits, targets, shift = _shifted()
    assert shift.min() > 1.0
    temperature = _best_temperatures(logits, targets)
    t, b = (np.array(v) for v in fit_binary_platt(logits, targets))
    assert b == pytest.approx(-shift, abs=0.35) and t == pytest.approx(1.0, abs=0.15)
    ece_temperature = expected_calibration_error(sigmoid(logits / temperature), targets)
    ece_platt = expected_calibration_error(sigmoid(logits / t + b), targets)
    assert ece_temperature > 0.1
    assert ece_platt < 0.03
    assert binary_nll(logits, targets, t, b) < binary_nll(logits, targets, temperature) - 0.05


def test_platt_recovers_a_scale_and_leaves_the_order_of_scores() -> None:
    rng = np.random.default_rng(1)
    calibrated = rng.normal(size=(3000, 2)) * 2.0
    targets = (rng.random((3000, 2)) < sigmoid(calibrated)).astype(np.float64)
    logits = calibrated * np.array([3.0, 0.5])
    t, b = fit_binary_platt(logits, targets)
    assert t[0] == pytest.approx(3.0, rel=0.2) and t[1] == pytest.approx(0.5, rel=0.2)
    assert np.abs(b).max() < 0.2
    for j in range(2):
        assert binary_nll(logits[:, j], targets[:, j], t[j], b[j]) < binary_nll(logits[:, j], targets[:, j])
        served = sigmoid(logits[:, j] / t[j] + b[j])
        assert (np.argsort(served, kind="stable") == np.argsort(logits[:, j], kind="stable")).all()


def test_platt_keeps_identity_where_a_label_has_one_value_or_no_rows() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(1.0, 1.0, size=(200, 3))
    targets = np.zeros((200, 3))
    targets[:, 1] = 1.0
    targets[:, 2] = logits[:, 2] > 1.0          # separable: the smoothed targets keep the scale finite
    t, b = fit_binary_platt(logits, targets)
    assert (t[:2], b[:2]) == ([1.0, 1.0], [0.0, 0.0])   # one value: nothing to learn about the label's calibration
    assert 0.05 <= t[2] < 1.0 and np.isfinite(b[2])
    assert fit_binary_platt(np.zeros((0, 2)), np.zeros((0, 2))) == ([1.0, 1.0], [0.0, 0.0])
    # every logit equal and the targets balanced: nothing lowers the NLL below the identity's
    assert fit_binary_platt(np.zeros((10, 1)), np.tile([0.0, 1.0], 5)[:, None]) == ([1.0], [0.0])


def test_a_calibrated_model_keeps_temperature_near_one() -> None:
    logits, targets = _overconfident()
    t = fit_softmax_temperature(logits / 4.0, targets)
    assert t == pytest.approx(1.0, abs=0.15)


def test_ece_by_hand() -> None:
    # bins of width 1/15: 0.95 and 0.99 share the last bin (mean confidence 0.97, accuracy 0.5);
    # 0.5 is alone in bin 8 (accuracy 1): ECE = (2 * 0.47 + 1 * 0.5) / 3
    confidence = np.array([0.95, 0.99, 0.5])
    correct = np.array([1, 0, 1])
    assert expected_calibration_error(confidence, correct) == pytest.approx((2 * 0.47 + 0.5) / 3)
    assert reliability(confidence, correct) == [(0.5, 1.0, 1), (pytest.approx(0.97), 0.5, 2)]
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


def _forecasts(rows: int, rng: np.random.Generator, sharpen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Top scores in [1/3, 1] and outcomes drawn from score ** sharpen: calibrated at 1, overconfident above."""
    confidence = np.clip(rng.beta(5.0, 1.0, rows), 1 / 3, 1.0)
    return confidence, rng.random(rows) < confidence**sharpen


def test_consistency_passes_calibrated_scores_at_its_level_and_fails_overconfident_ones() -> None:
    rng = np.random.default_rng(7)
    p_calibrated, p_overconfident, noise = [], [], []
    for _ in range(200):
        confidence, correct = _forecasts(300, rng)
        found = consistency(reliability(confidence, correct), expected_calibration_error(confidence, correct))
        p_calibrated.append(found.p_value)
        noise.append(found.ece_if_calibrated)
        confidence, correct = _forecasts(300, rng, sharpen=2.0)
        p_overconfident.append(consistency(reliability(confidence, correct),
                                           expected_calibration_error(confidence, correct)).p_value)
    # a test at level 0.05 rejects about 5% of calibrated sets (binomial sd of 200 draws: 1.5%) ...
    assert 0.01 <= np.mean(np.array(p_calibrated) < 0.05) <= 0.10
    # ... and nearly every overconfident one
    assert np.mean(np.array(p_overconfident) < 0.05) > 0.9
    # ECE's noise on 300 rows is several hundredths, on 3,000 a third of that (1 / sqrt(rows))
    big = consistency(reliability(*_forecasts(3000, rng)), 0.0).ece_if_calibrated
    assert 0.03 < float(np.median(noise)) < 0.07 and big < float(np.median(noise)) / 2.5


def test_consistency_bands_hold_each_bins_calibrated_accuracy() -> None:
    points = [(0.5, 0.5, 100), (0.95, 1.0, 20), (0.7, 0.7, 1)]
    found = consistency(points, expected_calibration_error(np.array([]), np.array([])))
    assert found.p_value == 1.0   # an ECE of 0: every draw is at least as far off
    for (confidence, _, _), (low, high) in zip(points, found.bands, strict=True):
        assert 0.0 <= low <= confidence <= high <= 1.0
    assert found.bands[0] == pytest.approx((0.42, 0.58), abs=0.01)   # 50 +- 1.645 * 5 rows of 100
    assert found.bands[2] == (0.0, 1.0)                               # one row: right or wrong
    assert consistency([], 0.0).p_value == 1.0 and consistency([], 0.0).bands == []


def test_logit_scale_is_what_a_temperature_divides() -> None:
    logits, _ = _overconfident(200)
    assert logit_scale(logits / 2.5) == pytest.approx(logit_scale(logits) / 2.5)
    shifted = logits + np.arange(len(logits))[:, None]   # a constant per row changes no probability
    assert logit_scale(shifted) == pytest.approx(logit_scale(logits))


def test_a_temperature_carried_to_a_refit_model_scales_with_its_logits() -> None:
    """A refit model whose logits are 1.3x the first run's gets 1.3x its temperature: the same served scores."""
    logits, _ = _overconfident(200)
    first = TaskParams(temperature=[1.8], thresholds=[0.5])
    refit = carried(first, [logit_scale(logits)], [logit_scale(logits * 1.3)])
    assert refit.temperature == [pytest.approx(1.8 * 1.3)] and refit.thresholds == [0.5]
    assert softmax(logits * 1.3 / refit.temperature[0]) == pytest.approx(softmax(logits / 1.8))
    # bounded as a fitted temperature is (LOG_T_BOUNDS), and left alone without two scales to compare
    assert carried(first, [1.0], [1000.0]).temperature == [pytest.approx(np.exp(3.0))]
    assert carried(first, [], []) == first and carried(first, [1.0], [0.0]) == first
    assert carried(TaskParams(), [1.0], [2.0]) == TaskParams()


def test_nothing_to_fit() -> None:
    assert fit_softmax_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    # every logit equal: the likelihood does not depend on T
    assert fit_softmax_temperature(np.zeros((10, 3)), np.zeros(10, dtype=int)) == 1.0


def test_task_calibration_lowers_the_nll_of_an_overconfident_classifier_and_outputs_apply_it() -> None:
    """Logits 6x too sharp for how often they are right: Task.calibrate fits T > 1, lowers the NLL and the ECE, and
    Task.outputs serves softmax(logits / T) without changing a decision."""
    from tuneserve.tasks import TaskParams, get_task

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 600)
    logits = rng.normal(0.0, 1.0, (600, 3))
    logits[np.arange(600), truth] += 1.0
    logits *= 6.0
    labels = ["a", "b", "c"]
    task = get_task("classification")
    params, fit = task.calibrate(logits, [labels[i] for i in truth], labels, TaskParams())
    assert fit is not None and params.temperature == fit.temperature and fit.temperature[0] > 2.0
    assert fit.nll_after < fit.nll_before and fit.ece_after < fit.ece_before
    served = task.outputs(logits, params)
    assert np.allclose(served, softmax(logits / fit.temperature[0]), atol=1e-6)
    assert (served.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_multi_label_calibrates_each_label_before_tuning_its_threshold() -> None:
    """Task.calibrate fits Platt scaling per label on a shifted model, lowers the NLL and the ECE, Task.outputs serves
    sigmoid(z / T + b), and the thresholds are tuned on those calibrated probabilities."""
    from tuneserve.tasks import TaskParams, get_task

    logits, truth, _ = _shifted(n=600)
    labels = ["w", "x", "y", "z"]
    targets = [[labels[j] for j in np.flatnonzero(row)] for row in truth]
    task = get_task("multi_label")
    params, fit = task.calibrate(logits, targets, labels, TaskParams("multi_label"))
    assert fit is not None and params.temperature == fit.temperature and params.bias == fit.bias
    assert len(fit.bias) == 4 and max(fit.bias) < -1.0
    assert fit.nll_after < fit.nll_before and fit.ece_after < 0.05 < fit.ece_before
    served = task.outputs(logits, params)
    assert np.allclose(served, sigmoid(logits / np.array(fit.temperature) + np.array(fit.bias)), atol=1e-6)
    tuned = task.tune(logits, targets, labels, params)
    assert (tuned.temperature, tuned.bias) == (params.temperature, params.bias) and len(tuned.thresholds) == 4
    calibrated_logits = logits / np.array(fit.temperature) + np.array(fit.bias)
    assert tuned.thresholds == task.tune(calibrated_logits, targets, labels, TaskParams("multi_label")).thresholds
    # on the shifted sigmoid the F1-best thresholds sit higher: the same decisions, but not the served probabilities
    assert min(task.tune(logits, targets, labels, TaskParams("multi_label")).thresholds) > max(tuned.thresholds)


def test_a_task_json_written_before_biases_serves_as_before(tmp_path: Path) -> None:
    """A multi-label version calibrated before Platt scaling (temperatures only) and one not calibrated at all load
    without a bias and serve sigmoid(z / T) and sigmoid(z)."""
    from tuneserve.tasks import TaskParams, get_task

    logits = np.random.default_rng(4).normal(size=(5, 2))
    task = get_task("multi_label")
    (tmp_path / "task.json").write_text(json.dumps(
        {"task": "multi_label", "text_pairs": False, "thresholds": [0.3, 0.6], "target_mean": 0.0, "target_std": 1.0,
         "temperature": [2.0, 0.5]}))
    params = TaskParams.load(tmp_path)
    assert (params.bias, params.temperature, params.thresholds) == ([], [2.0, 0.5], [0.3, 0.6])
    assert np.allclose(task.outputs(logits, params), sigmoid(logits / np.array([2.0, 0.5])), atol=1e-6)
    (tmp_path / "task.json").write_text(json.dumps({"task": "multi_label", "thresholds": [0.3, 0.6]}))
    assert np.allclose(task.outputs(logits, TaskParams.load(tmp_path)), sigmoid(logits), atol=1e-6)


def test_regression_has_nothing_to_calibrate() -> None:
    from tuneserve.tasks import TaskParams, get_task

    params = TaskParams("regression")
    assert get_task("regression").calibrate(np.zeros((3, 1)), [1.0, 2.0, 3.0], [], params) == (params, None)
