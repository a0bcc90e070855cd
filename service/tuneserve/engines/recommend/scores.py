"""Transferability estimates from frozen features: LogME and a cross-validated linear probe.

LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021) scores a
backbone by how well a Bayesian linear model on its frozen features explains the labels. For one target vector y
(n examples) and features F (n x D), with weights w ~ N(0, alpha^-1 I) and noise precision beta, the log evidence is

    log p(y | F, alpha, beta) = n/2 log beta + D/2 log alpha - n/2 log 2pi
                                - beta/2 ||F m - y||^2 - alpha/2 m'm - 1/2 log |A|,
    A = alpha I + beta F'F,  m = beta A^-1 F'y.

alpha and beta are set to maximise it by MacKay's fixed-point iteration (gamma = sum beta s_i / (alpha + beta s_i),
alpha = gamma / m'm, beta = (n - gamma) / ||F m - y||^2), where s_i are the eigenvalues of F'F: one SVD of F makes
every iteration O(min(n, D)). The score of a classification dataset is the mean over classes of the maximised
evidence per example, each class a one-vs-rest 0/1 target. Higher is better; scores compare backbones on the same
dataset, not across datasets.

Pure numpy (and scikit-learn for the probe): it runs in the feature worker, never in the serving process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_MAX_ITERATIONS = 100
_TOLERANCE = 1e-5


@dataclass(frozen=True)
class _Spectrum:
    """F = U diag(sigma) V' (thin SVD), the eigenvalues sigma^2 of F'F and the feature dimension D."""

    u: FloatArray
    eigenvalues: FloatArray
    dim: int


def _spectrum(features: FloatArray) -> _Spectrum:
    u, sigma, _ = np.linalg.svd(features, full_matrices=False)
    return _Spectrum(u=u, eigenvalues=sigma**2, dim=features.shape[1])


def _evidence(spectrum: _Spectrum, y: FloatArray, alpha: float, beta: float) -> tuple[float, float, float, float]:
    """(log evidence, gamma, m'm, ||F m - y||^2) at (alpha, beta), all from the SVD.

    With z = U'y: m'm = sum (beta sigma_i z_i / (alpha + beta s_i))^2 and the residual is
    sum (alpha z_i / (alpha + beta s_i))^2 plus the part of y outside F's column space, ||y||^2 - ||z||^2.
    The D - rank zero eigenvalues contribute log alpha each to log |A|.
    """
    n = y.shape[0]
    s = spectrum.eigenvalues
    z = spectrum.u.T @ y
    denominator = alpha + beta * s
    outside = max(float(y @ y - z @ z), 0.0)
    m_norm2 = float(np.sum(beta**2 * s * z**2 / denominator**2))
    residual2 = float(np.sum((alpha * z / denominator) ** 2)) + outside
    gamma = float(np.sum(beta * s / denominator))
    log_det_a = float(np.sum(np.log(denominator))) + (spectrum.dim - s.shape[0]) * math.log(alpha)
    evidence = (
        n / 2 * math.log(beta)
        + spectrum.dim / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual2
        - alpha / 2 * m_norm2
        - log_det_a / 2
    )
    return evidence, gamma, m_norm2, residual2


def _maximise(spectrum: _Spectrum, y: FloatArray) -> tuple[float, float, float]:
    """(log evidence / n, alpha, beta) at the fixed point of MacKay's updates, from alpha = beta = 1."""
    n = y.shape[0]
    alpha, beta = 1.0, 1.0
    for _ in range(_MAX_ITERATIONS):
        _, gamma, m_norm2, residual2 = _evidence(spectrum, y, alpha, beta)
        # NOTE: the floors keep a perfectly fitted target (zero residual) or an all-zero fit finite
        new_alpha = gamma / max(m_norm2, 1e-12)
        new_beta = max(n - gamma, 1e-12) / max(residual2, 1e-12)
        converged = abs(new_alpha - alpha) <= _TOLERANCE * alpha and abs(new_beta - beta) <= _TOLERANCE * beta
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    evidence = _evidence(spectrum, y, alpha, beta)[0]
    return evidence / n, alpha, beta


def log_evidence(features: FloatArray, y: FloatArray, alpha: float, beta: float) -> float:
    """The log evidence of target y at the given alpha, beta (not maximised, not divided by n)."""
    spectrum = _spectrum(np.asarray(features, dtype=np.float64))
    return _evidence(spectrum, np.asarray(y, dtype=np.float64), alpha, beta)[0]


def maximised_evidence(features: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """(maximised log evidence per example, alpha, beta) of one real-valued target vector."""
    features, scale = _unit_rms(np.asarray(features, dtype=np.float64))
    evidence, alpha, beta = _maximise(_spectrum(features), np.asarray(y, dtype=np.float64))
    return evidence, alpha * scale**2, beta  # NOTE: the prior precision of weights on the unscaled features


def _unit_rms(features: FloatArray) -> tuple[FloatArray, float]:
    """The features divided by their root mean square, and that divisor (1 for all-zero features).

    NOTE: the maximised evidence does not depend on the features' overall scale (scaling F by c is scaling the
    weights by 1/c, which alpha absorbs), but the fixed point starts from alpha = beta = 1 and floors its
    denominators: features of size 1e6 (or 1e-9, as an untrained network's can be) would otherwise converge
    elsewhere or not at all. One global factor, not a per-feature standardisation, which would change the prior."""
    scale = float(np.sqrt(np.mean(features**2))) if features.size else 0.0
    if not math.isfinite(scale) or scale == 0.0:
        return features, 1.0
    return features / scale, scale


def logme(features: FloatArray, labels: NDArray[np.int_]) -> float:
    """The LogME score of integer class labels (0..K-1) given features (n x D): the mean over classes of the
    maximised one-vs-rest log evidence per example."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features {features.shape} and labels {labels.shape} do not match")
    classes = np.unique(labels)
    if classes.shape[0] < 2:
        raise ValueError("LogME needs at least two classes")
    spectrum = _spectrum(_unit_rms(features)[0])
    return float(np.mean([_maximise(spectrum, (labels == c).astype(np.float64))[0] for c in classes]))


def logme_columns(features: FloatArray, columns: FloatArray) -> float:
    """The LogME score of real-valued target columns [n x K] (one-vs-rest indicators, multi-hot labels, a
    standardised regression target): the mean over the columns that vary of their maximised log evidence per
    example. `logme` is this for one-hot columns."""
    features = np.asarray(features, dtype=np.float64)
    columns = np.asarray(columns, dtype=np.float64).reshape(len(columns), -1)
    if features.ndim != 2 or features.shape[0] != columns.shape[0]:
        raise ValueError(f"features {features.shape} and targets {columns.shape} do not match")
    varying = [j for j in range(columns.shape[1]) if np.ptp(columns[:, j]) > 0]
    if not varying:
        raise ValueError("LogME needs targets that vary: every sampled row has the same target")
    spectrum = _spectrum(_unit_rms(features)[0])
    return float(np.mean([_maximise(spectrum, columns[:, j])[0] for j in varying]))


def probe_accuracy(features: FloatArray, labels: NDArray[np.int_], *, folds: int = 5, seed: int = 0) -> float | None:
    """Mean accuracy of a logistic-regression probe on standardised features under stratified k-fold
    cross-validation; None when the smallest class has fewer than 2 examples (no fold could hold it out)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.min(np.unique(labels, return_counts=True)[1]))
    k = min(folds, smallest)
    if k < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(probe, features, labels, cv=splits)))
