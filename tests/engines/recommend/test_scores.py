"""LogME against direct evaluations of the evidence, and sanity checks of what it ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tuneserve.engines.recommend.scores import log_evidence, logme, maximised_evidence, probe_accuracy


def _direct_formula(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The paper's expression, with A and m built explicitly (no SVD)."""
    n, dim = features.shape
    a = alpha * np.eye(dim) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ y)
    residual = features @ m - y
    return float(
        n / 2 * math.log(beta) + dim / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual @ residual - alpha / 2 * m @ m - np.linalg.slogdet(a)[1] / 2
    )


def _marginal_likelihood(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The same evidence from its definition: y ~ N(0, F F' / alpha + I / beta) once w is integrated out."""
    covariance = features @ features.T / alpha + np.eye(features.shape[0]) / beta
    return float(multivariate_normal(mean=np.zeros(features.shape[0]), cov=covariance).logpdf(y))


@pytest.mark.parametrize(("n", "dim"), [(30, 5), (8, 20), (12, 12)])
@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 1.0), (0.3, 7.0), (25.0, 0.05)])
def test_evidence_matches_direct_evaluations(n: int, dim: int, alpha: float, beta: float) -> None:
    rng = np.random.default_rng(n * 100 + dim)
    features = rng.normal(size=(n, dim))
    y = (rng.random(n) > 0.5).astype(float)

    ours = log_evidence(features, y, alpha, beta)

    assert ours == pytest.approx(_direct_formula(features, y, alpha, beta), rel=1e-9, abs=1e-9)
    assert ours == pytest.approx(_marginal_likelihood(features, y, alpha, beta), rel=1e-9, abs=1e-9)


def test_evidence_with_rank_deficient_features() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(20, 3))
    features = np.hstack([base, base @ rng.normal(size=(3, 4))])  # 7 columns of rank 3
    y = rng.normal(size=20)

    assert log_evidence(features, y, 0.5, 2.0) == pytest.approx(_marginal_likelihood(features, y, 0.5, 2.0), rel=1e-8)


def test_fixed_point_is_a_maximum() -> None:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(60, 10))
    y = features @ rng.normal(size=10) + 0.3 * rng.normal(size=60)

    per_example, alpha, beta = maximised_evidence(features, y)
    best = log_evidence(features, y, alpha, beta)

    assert per_example == pytest.approx(best / 60)
    for scale_alpha in (0.5, 0.9, 1.1, 2.0):
        for scale_beta in (0.5, 0.9, 1.1, 2.0):
            assert log_evidence(features, y, alpha * scale_alpha, beta * scale_beta) < best


def test_logme_is_the_mean_of_one_vs_rest_evidences() -> None:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(40, 6))
    labels = rng.integers(0, 3, size=40)

    expected = np.mean([maximised_evidence(features, (labels == c).astype(float))[0] for c in range(3)])

    assert logme(features, labels) == pytest.approx(expected)


def _clusters(rng: np.random.Generator, labels: np.ndarray, dim: int, spread: float) -> np.ndarray:
    centres = rng.normal(size=(int(labels.max()) + 1, dim)) * 3
    return centres[labels] + spread * rng.normal(size=(labels.shape[0], dim))


def test_separating_features_score_higher_than_random_ones() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    separating = _clusters(rng, labels, 32, spread=1.0)
    noisy = _clusters(rng, labels, 32, spread=6.0)
    random = rng.normal(size=(200, 32))

    scores = [logme(separating, labels), logme(noisy, labels), logme(random, labels)]

    assert scores[0] > scores[1] > scores[2]


def test_logme_does_not_reward_width_alone() -> None:
    """Random features score about the same whatever their dimension: extra columns are no free evidence."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 60)
    separating = _clusters(rng, labels, 16, spread=1.0)
    wide_random = rng.normal(size=(180, 256))

    assert logme(separating, labels) > logme(wide_random, labels)


@pytest.mark.parametrize("dim", [20, 200])  # fewer and more features than examples
def test_logme_does_not_depend_on_the_features_overall_scale(dim: int) -> None:
    """The evidence is invariant to F -> cF (alpha absorbs c); the score must be too, including the 1e-9 scale of an
    untrained network's features and large unnormalised ones (the fixed point used to drift or stall there)."""
    rng = np.random.default_rng(dim)
    labels = np.repeat(np.arange(3), 30)
    features = _clusters(rng, labels, dim, spread=2.0)

    reference = logme(features, labels)

    for scale in (1e-12, 1e-9, 1e-3, 1e3, 1e6, 1e9):
        assert logme(features * scale, labels) == pytest.approx(reference, rel=1e-6)
    per_example, alpha, beta = maximised_evidence(features * 1e6, (labels == 0).astype(float))
    assert per_example == pytest.approx(maximised_evidence(features, (labels == 0).astype(float))[0], rel=1e-6)
    assert log_evidence(features * 1e6, (labels == 0).astype(float), alpha, beta) / 90 == pytest.approx(per_example)


def test_logme_refuses_one_class_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="two classes"):
        logme(np.ones((5, 2)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="do not match"):
        logme(np.ones((5, 2)), np.array([0, 1, 0]))


def test_probe_accuracy_separates_good_from_random_features() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 30)

    good = probe_accuracy(_clusters(rng, labels, 8, spread=0.5), labels)
    random = probe_accuracy(rng.normal(size=(90, 8)), labels)

    assert good is not None and good > 0.95
    assert random is not None and random < 0.6
    assert probe_accuracy(rng.normal(size=(5, 2)), np.array([0, 0, 0, 0, 1])) is None
