"""Temperature scaling (Guo et al., 2017) and the expected calibration error.

A temperature T > 0 divides the head's logits before the softmax (one T per model) or before each sigmoid (one T per
label for multi-label); it is fitted after training by minimising the negative log-likelihood of the validation rows,
so the argmax and the ranking of scores never change, only how confident they read. T > 1 softens an overconfident
model. Regression has nothing to calibrate.

ECE is the usual one: 15 equal-width bins of the top score (multi-label: of every label's probability, each a yes/no
event), the weighted mean of |accuracy - mean confidence| over the bins.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

BINS = 15
# log T is searched in [-3, 3]: T from 0.05 (sharpen 20x) to 20 (flatten 20x).
LOG_T_BOUNDS = (-3.0, 3.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return result


def sigmoid(logits: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    return result


def softmax_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of class indices under softmax(logits / T)."""
    scaled = logits.astype(np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(targets)), targets].mean())


def binary_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of 0/1 targets under sigmoid(logits / T) (any shape)."""
    z = logits.astype(np.float64) / temperature
    # NOTE: log(1 + e^z) - y z, written to stay finite for large |z|.
    return float(np.mean(np.logaddexp(0.0, z) - targets * z))


def fit_softmax_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T minimising softmax_nll on (logits, class indices); 1 when there is nothing to fit."""
    if len(targets) == 0:
        return 1.0
    found = minimize_scalar(
        lambda log_t: softmax_nll(logits, targets, float(np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return _kept(float(np.exp(found.x)), softmax_nll(logits, targets, float(np.exp(found.x))),
                 softmax_nll(logits, targets))


def fit_binary_temperatures(logits: np.ndarray, targets: np.ndarray) -> list[float]:
    """One T per column minimising that column's binary_nll; 1 for a column whose targets are all one value (its
    likelihood would push T to a bound without saying anything about calibration)."""
    temperatures = []
    for j in range(logits.shape[1]):
        column, wanted = logits[:, j], targets[:, j]
        if len(wanted) == 0 or wanted.min() == wanted.max():
            temperatures.append(1.0)
            continue
        found = minimize_scalar(
            lambda log_t, c=column, w=wanted: binary_nll(c, w, float(np.exp(log_t))),
            bounds=LOG_T_BOUNDS, method="bounded",
        )
        t = float(np.exp(found.x))
        temperatures.append(_kept(t, binary_nll(column, wanted, t), binary_nll(column, wanted)))
    return temperatures


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """ECE of confidences in [0, 1] against 0/1 outcomes, over `bins` equal-width bins."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if confidence.size == 0:
        return 0.0
    # NOTE: bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first bin.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(correct[members].mean() - confidence[members].mean())
    return float(total / confidence.size)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, rows) per non-empty bin: the points of a reliability diagram."""
    confidence = np.asarray(confidence, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    points = []
    for b in range(bins):
        members = index == b
        if members.any():
            points.append((float(confidence[members].mean()), float(correct[members].mean()), int(members.sum())))
    return points


def _kept(fitted: float, fitted_nll: float, identity_nll: float) -> float:
    """The fitted T, unless it does not lower the NLL (a flat objective): then T = 1 changes nothing."""
    return fitted if fitted_nll < identity_nll - 1e-9 else 1.0
