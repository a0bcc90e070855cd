"""Temperature scaling (Guo et al., 2017), Platt scaling (Platt, 1999) and the expected calibration error.

Single-label classification: a temperature T > 0 divides the head's logits before the softmax (one T per model), fitted
after training by minimising the negative log-likelihood of the validation rows, so the argmax and the ranking of
scores never change, only how confident they read. T > 1 softens an overconfident model.

Multi-label: Platt scaling per label, p = sigmoid(z / T + b), a scale (kept as a temperature, T > 0, so the ranking
within a label never changes) and a bias per label. The bias is what a temperature lacks: training with `pos_weight`
(class weighting) shifts each label's logit up by about log(pos_weight), which no scale undoes. (T, b) minimise the
label's binary cross-entropy on the validation rows against Platt's smoothed targets ((positives + 1) / (positives + 2)
for a positive row, 1 / (negatives + 2) for a negative one), so a label whose rows a threshold separates keeps a finite
scale. A label whose validation rows are all negative (or all positive) keeps T = 1, b = 0 (identity, the raw sigmoid
the training's decision rule was made for): they say nothing about its scale, and a bias fitted to them alone would
push a rare label's scores to about 1 / (rows + 2), below any threshold, however often the label occurs in training
(with no positive row its threshold is the shared one: `MultiLabel.tune`). A fit is also kept only if it lowers the
label's NLL against the 0/1 targets; otherwise identity.
Regression has nothing to calibrate.

ECE is the usual one: 15 equal-width bins of the top score (multi-label: of every (row, label) probability, each a
yes/no forecast of its own), the weighted mean of |accuracy - mean confidence| over the bins.

ECE is never 0 on a finite set, even for a perfectly calibrated model: each bin's accuracy is a sample. On 300 rows
of a model right about 85% of the time that noise alone is about 0.045 (a few hundredths either way), on 1,500 rows
about 0.02. `consistency` measures it for the scores at hand by consistency resampling (Broecker and Smith, 2007):
outcomes drawn as a perfectly calibrated model's would fall (each bin's count of right answers binomial in its rows
and its mean confidence), the ECE of each draw, and from them the ECE such a model would show on these rows (their
median), a p-value for "these scores are calibrated" (the share of draws at least as far off as the observed ECE)
and each bin's 5-95% band of accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.stats import binom

BINS = 15
# log T is searched in [-3, 3]: T from 0.05 (sharpen 20x) to 20 (flatten 20x).
LOG_T_BOUNDS = (-3.0, 3.0)
# Platt's bias: far beyond any shift pos_weight (at most 50, log 50 = 3.9) or a skewed label needs.
BIAS_BOUNDS = (-30.0, 30.0)
# Consistency resampling: draws of a calibrated model's outcomes (a fixed generator seed: the same report twice gives
# the same figures); its cost is draws x bins, whatever the rows.
DRAWS = 2000
BAND = (0.05, 0.95)


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


def binary_nll(
    logits: np.ndarray, targets: np.ndarray, temperature: float | np.ndarray = 1.0, bias: float | np.ndarray = 0.0
) -> float:
    """Mean binary cross-entropy of targets in [0, 1] under sigmoid(logits / T + b) (any shape; T and b broadcast, so
    one per column of a matrix)."""
    z = logits.astype(np.float64) / temperature + bias
    # NOTE: log(1 + e^z) - y z, written to stay finite for large |z|.
    return float(np.mean(np.logaddexp(0.0, z) - targets * z))


def logit_scale(logits: np.ndarray) -> float:
    """The median over rows of the logits' standard deviation across classes: a temperature divides it exactly
    (logit_scale(z / T) = logit_scale(z) / T), and the argmax and a shift of a row leave it alone."""
    return float(np.median(np.asarray(logits, dtype=np.float64).std(axis=1)))


def fit_softmax_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The T minimising softmax_nll on (logits, class indices); 1 when there is nothing to fit."""
    if len(targets) == 0:
        return 1.0
    found = minimize_scalar(
        lambda log_t: softmax_nll(logits, targets, float(np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return _kept(float(np.exp(found.x)), softmax_nll(logits, targets, float(np.exp(found.x))),
                 softmax_nll(logits, targets))


def fit_binary_platt(logits: np.ndarray, targets: np.ndarray) -> tuple[list[float], list[float]]:
    """One (T, b) per column minimising that column's binary_nll against Platt's smoothed targets (module docstring);
    (1, 0) for a column whose targets are all one value (or that has no rows) and where the fit does not lower the
    NLL."""
    temperatures, biases = [], []
    for j in range(logits.shape[1]):
        column = np.asarray(logits[:, j], dtype=np.float64)
        wanted = np.asarray(targets[:, j], dtype=np.float64)
        t, b = 1.0, 0.0
        if len(wanted) and wanted.min() != wanted.max():
            t, b = _platt(column, wanted)
            if binary_nll(column, wanted, t, b) >= binary_nll(column, wanted) - 1e-9:
                t, b = 1.0, 0.0
        temperatures.append(t)
        biases.append(b)
    return temperatures, biases


def _platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(T, b) of one label with both positive and negative rows."""
    positives = float(y.sum())
    soft = np.where(y > 0.5, (positives + 1.0) / (positives + 2.0), 1.0 / (len(y) - positives + 2.0))

    # NOTE: in (a = 1/T, b) the objective is a logistic regression on one feature, convex, so a bounded quasi-Newton
    # search finds its minimum; the gradient is exact.
    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        s = x[0] * z + x[1]
        residual = 1.0 / (1.0 + np.exp(-np.clip(s, -60.0, 60.0))) - soft
        loss = float(np.mean(np.logaddexp(0.0, s) - soft * s))
        return loss, np.array([float((residual * z).mean()), float(residual.mean())])

    scale_bounds = (float(np.exp(-LOG_T_BOUNDS[1])), float(np.exp(-LOG_T_BOUNDS[0])))
    found = minimize(objective, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[scale_bounds, BIAS_BOUNDS])
    return 1.0 / float(found.x[0]), float(found.x[1])


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


@dataclass(frozen=True)
class Consistency:
    """What a perfectly calibrated model with these scores would show on these rows (module docstring)."""

    ece_if_calibrated: float          # the median ECE of the draws: ECE's noise on these rows
    p_value: float                    # the share of draws whose ECE is at least the observed one (+1 smoothing)
    # per reliability bin: the 5th and 95th percentile of its accuracy (of a few rows' bin, the band may be one value:
    # one row scored 0.97 is right with probability 0.97, so both percentiles are 1)
    bands: list[tuple[float, float]]


def consistency(points: list[tuple[float, float, int]], ece: float, draws: int = DRAWS) -> Consistency:
    """Consistency resampling of a reliability diagram's points ((mean confidence, accuracy, rows) per bin, as
    `reliability` gives them) against its ECE. Each bin's right answers are drawn as Binomial(rows, mean confidence):
    its rows' confidences differ by less than a bin's width (1/15), which makes that within 1/900 per row of the
    variance of drawing each row from its own confidence."""
    if not points:
        return Consistency(0.0, 1.0, [])
    confidence = np.array([c for c, _, _ in points], dtype=np.float64)
    rows = np.array([n for _, _, n in points], dtype=np.int64)
    generator = np.random.default_rng(0)
    accuracy = generator.binomial(rows, confidence, size=(draws, len(rows))) / rows
    simulated = np.abs(accuracy - confidence) @ rows / rows.sum()
    p_value = float((1 + np.sum(simulated >= ece - 1e-12)) / (1 + draws))
    bands = [(float(binom.ppf(BAND[0], n, c) / n), float(binom.ppf(BAND[1], n, c) / n))
             for c, n in zip(confidence, rows, strict=True)]
    return Consistency(float(np.median(simulated)), p_value, bands)


def _kept(fitted: float, fitted_nll: float, identity_nll: float) -> float:
    """The fitted T, unless it does not lower the NLL (a flat objective): then T = 1 changes nothing."""
    return fitted if fitted_nll < identity_nll - 1e-9 else 1.0
