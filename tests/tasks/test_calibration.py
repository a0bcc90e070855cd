"""Temperature scaling and ECE on controlled data: an overconfident model is softened, the NLL drops, the argmax and
ranking stay, and ECE matches a hand-computed value."""

from __future__ import annotations

import numpy as np
import pytest

from tuneserve.tasks.calibration import (
    binary_nll,
    expected_calibration_error,
    fit_binary_temperatures,
    fit_softmax_temperature,
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


def test_per_label_temperatures_fit_each_label_and_leave_constant_labels_alone() -> None:
    rng = np.random.default_rng(1)
    calibrated = rng.normal(size=(3000, 3)) * 2.0
    targets = (rng.random((3000, 3)) < sigmoid(calibrated)).astype(np.float64)
    targets[:, 2] = 1.0                      # one value only: nothing to learn about its calibration
    logits = calibrated * np.array([3.0, 0.5, 2.0])
    t = fit_binary_temperatures(logits, targets)
    assert t[0] == pytest.approx(3.0, rel=0.2)
    assert t[1] == pytest.approx(0.5, rel=0.2)
    assert t[2] == 1.0
    for j in range(2):
        assert binary_nll(logits[:, j], targets[:, j], t[j]) < binary_nll(logits[:, j], targets[:, j])


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
    from tuneserve.tasks import TaskParams, get_task

    rng = np.random.default_rng(1)
    truth = rng.random((400, 2)) < 0.4
    logits = np.where(truth, 1.0, -1.0) + rng.normal(0.0, 1.5, (400, 2))
    logits[:, 0] *= 5.0                  # label 0 overconfident, label 1 about right
    labels = ["x", "y"]
    targets = [[labels[j] for j in np.flatnonzero(row)] for row in truth]
    task = get_task("multi_label")
    params, fit = task.calibrate(logits, targets, labels, TaskParams("multi_label"))
    assert fit is not None and fit.temperature[0] > 3.0 and 0.5 < fit.temperature[1] < 2.0
    assert fit.nll_after < fit.nll_before
    served = task.outputs(logits, params)
    assert np.allclose(served, sigmoid(logits / np.array(fit.temperature)), atol=1e-6)
    tuned = task.tune(logits, targets, labels, params)
    assert tuned.temperature == params.temperature and len(tuned.thresholds) == 2


def test_regression_has_nothing_to_calibrate() -> None:
    from tuneserve.tasks import TaskParams, get_task

    params = TaskParams("regression")
    assert get_task("regression").calibrate(np.zeros((3, 1)), [1.0, 2.0, 3.0], [], params) == (params, None)
