"""The task objects on small known inputs: loss shapes and values, the multi-label thresholds really tuned, the
regression scaler round trip, metrics against scikit-learn / SciPy, the paired tests and the parity decisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import f1_score, hamming_loss, mean_absolute_error, mean_squared_error, r2_score

from tuneserve.tasks import Task, TaskParams, get_task
from tuneserve.tasks.stats import holm, mcnemar_p, wilcoxon_p

CLASSIFICATION, MULTI_LABEL, REGRESSION = get_task("classification"), get_task("multi_label"), get_task("regression")
LABELS = ["a", "b", "c"]


def logit(p: float | np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p)).astype(np.float32)


def test_head_widths_and_loss_shapes() -> None:
    assert [task.num_outputs(LABELS) for task in (CLASSIFICATION, MULTI_LABEL, REGRESSION)] == [3, 3, 1]
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    classes = torch.tensor([0, 2, 1, 1])
    loss = CLASSIFICATION.loss(logits, classes, weights=None, options={})
    assert loss.shape == () and torch.allclose(loss, torch.nn.functional.cross_entropy(logits, classes))
    hot = torch.tensor(MULTI_LABEL.encode_targets([["a"], [], ["b", "c"], ["a", "c"]], LABELS, TaskParams()))
    assert hot.shape == (4, 3) and hot.dtype == torch.float32
    loss = MULTI_LABEL.loss(logits, hot, weights=torch.tensor([2.0, 1.0, 1.0]), options={})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, hot, pos_weight=torch.tensor([2.0, 1, 1]))
    assert loss.shape == () and torch.allclose(loss, expected)
    values = torch.tensor([0.5, -1.0, 3.0, 0.0])
    assert torch.allclose(REGRESSION.loss(logits[:, :1], values, weights=None, options={}),
                          torch.nn.functional.mse_loss(logits[:, 0], values))
    assert torch.allclose(REGRESSION.loss(logits[:, :1], values, weights=None, options={"regression_loss": "huber"}),
                          torch.nn.functional.huber_loss(logits[:, 0], values))


def test_multi_label_pos_weight_is_negatives_over_positives() -> None:
    targets = [["a"], ["a", "b"], [], ["a"]]
    assert MULTI_LABEL.loss_weights(targets, LABELS).tolist() == pytest.approx([1 / 3, 3.0, 1.0])


def test_thresholds_are_tuned_where_f1_is_best_not_at_one_half() -> None:
    """Label a's positives score 0.35-0.45 and its negatives 0.1-0.25: at 0.5 it finds none (F1 0), the tuned
    threshold sits between the two groups. Label b, with no positive row, takes the shared threshold, which sits there
    too (above b's scores of 0.2)."""
    rng = np.random.default_rng(0)
    positives, negatives = rng.uniform(0.35, 0.45, 20), rng.uniform(0.1, 0.25, 30)
    probabilities = np.concatenate([positives, negatives])
    logits = np.stack([logit(probabilities), logit(np.full(50, 0.2))], axis=1)
    targets = [["a"]] * 20 + [[]] * 30
    params = MULTI_LABEL.tune(logits, targets, ["a", "b"], TaskParams(task="multi_label"))
    a, b = params.thresholds
    assert 0.25 < a <= 0.35 and 0.25 < b <= 0.35
    tuned = MULTI_LABEL.metrics(MULTI_LABEL.outputs(logits, params), targets, ["a", "b"], params)
    untuned = MULTI_LABEL.metrics(MULTI_LABEL.outputs(logits, TaskParams()), targets, ["a", "b"], TaskParams())
    assert (tuned["micro_f1"], untuned["micro_f1"]) == (1.0, 0.0)
    assert MULTI_LABEL.decode(MULTI_LABEL.outputs(logits[:1], params)[0], ["a", "b"], params, 0).labels == ["a"]


def test_a_label_with_few_validation_positives_is_shrunk_toward_the_shared_threshold() -> None:
    """'rich' (100 positives at 0.5-0.9, 100 negatives at 0.1-0.45) sets the shared, micro-F1-best threshold near
    0.5 and keeps about its own; 'thin' has 2 positives at 0.96 over negatives reaching 0.9, so its own optimum sits
    above 0.9, a cut no held-out row of it is likely to clear: it is pulled most of the way to the shared one."""
    rng = np.random.default_rng(1)
    rich = np.concatenate([rng.uniform(0.5, 0.9, 100), rng.uniform(0.1, 0.45, 100)])
    thin = np.concatenate([[0.96, 0.96], rng.uniform(0.1, 0.9, 198)])
    targets = [["rich", "thin"]] * 2 + [["rich"]] * 98 + [[]] * 100
    logits = np.stack([logit(rich), logit(thin)], axis=1)
    rich_t, thin_t = MULTI_LABEL.tune(logits, targets, ["rich", "thin"], TaskParams(task="multi_label")).thresholds
    assert 0.44 <= rich_t <= 0.52
    assert 0.5 < thin_t < 0.65            # its own optimum alone: above 0.9


def test_regression_scaler_round_trip_in_the_targets_units() -> None:
    targets = [1200.0, 3400.0, 2500.0, 900.0, 4100.0]
    params = REGRESSION.prepare(targets, TaskParams(task="regression"))
    assert params.target_mean == pytest.approx(np.mean(targets)) and params.target_std == pytest.approx(np.std(targets))
    encoded = REGRESSION.encode_targets(targets, [], params)
    assert encoded.mean() == pytest.approx(0, abs=1e-6) and encoded.std() == pytest.approx(1, abs=1e-6)
    assert REGRESSION.decode_targets(encoded, [], params) == pytest.approx(targets, rel=1e-6)
    assert REGRESSION.outputs(encoded[:, None], params)[:, 0] == pytest.approx(targets, rel=1e-6)
    assert REGRESSION.prepare([7.0, 7.0], TaskParams()).target_std == 1.0   # a constant target: no division by 0


def test_multi_label_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=(40, 3)).astype(np.float32)
    truth = rng.uniform(size=(40, 3)) > 0.6
    targets = [[LABELS[j] for j in np.flatnonzero(row)] for row in truth]
    params = TaskParams(task="multi_label", thresholds=[0.3, 0.5, 0.7])
    predicted = scores >= np.array(params.thresholds)
    metrics = MULTI_LABEL.metrics(scores, targets, LABELS, params)
    assert metrics["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(truth, predicted))
    assert metrics["subset_accuracy"] == pytest.approx(np.mean(np.all(truth == predicted, axis=1)))


def test_regression_metrics_match_scikit_learn_and_scipy() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(100, 20, 50)
    predicted = truth + rng.normal(0, 5, 50)
    metrics = REGRESSION.metrics(predicted[:, None].astype(np.float32), list(truth), [], TaskParams())
    assert metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, predicted)), rel=1e-5)
    assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-5)
    assert metrics["r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-5)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(truth, predicted)[0], rel=1e-5)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(truth, predicted)[0], rel=1e-5)


def test_paired_tests() -> None:
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(10, 0) == pytest.approx(2 / 2**10)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    first, second = np.array([True] * 12 + [False] * 8), np.array([False] * 12 + [False] * 8)
    test = CLASSIFICATION.paired_test(first, second)
    assert (test.test, test.only_first_better, test.only_second_better) == ("mcnemar", 12, 0)
    assert test.p_value == pytest.approx(mcnemar_p(12, 0))
    per_label = np.stack([first, first], axis=1), np.stack([second, first], axis=1)
    test = MULTI_LABEL.paired_test(*per_label)
    assert test.test == "mcnemar-holm" and test.p_value == pytest.approx(min(holm([mcnemar_p(12, 0), 1.0])))
    errors_a, errors_b = np.linspace(0, 1, 30), np.linspace(0, 1, 30) + 0.5
    test = REGRESSION.paired_test(errors_a, errors_b)
    assert (test.test, test.only_first_better) == ("wilcoxon", 30)
    assert test.p_value == pytest.approx(stats.wilcoxon(errors_a, errors_b).pvalue)
    assert wilcoxon_p(errors_a, errors_a) == 1.0


def test_parity_decisions_per_task() -> None:
    reference = np.array([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]], dtype=np.float32)
    assert CLASSIFICATION.parity(reference, reference + 1e-6, TaskParams()) == (pytest.approx(1e-6, rel=0.1), "")
    swapped = reference.copy()
    swapped[1] = [0.1, 0.2, 0.3]
    assert CLASSIFICATION.parity(reference, swapped, TaskParams())[1] == "1 rows' top class differs"
    params = TaskParams(task="multi_label", thresholds=[0.5, 0.5, 0.5])
    near = reference.copy()
    near[0, 1] = 0.0       # sigmoid 0.5 on the threshold: a tie either side may take, not counted
    assert MULTI_LABEL.parity(near, near + 5e-5, params)[1] == ""
    flipped = reference.copy()
    flipped[1, 0] = -0.1   # sigmoid(0.1) = 0.52 above, sigmoid(-0.1) = 0.48 below
    assert MULTI_LABEL.parity(reference, flipped, params) == (pytest.approx(0.2, rel=1e-3), "1 label decisions differ at the tuned "
                                                                              "thresholds")
    values = np.array([[0.5], [1.5]], dtype=np.float32)
    assert REGRESSION.parity(values, values + 0.25, TaskParams()) == (pytest.approx(0.25, rel=1e-3), "")


@pytest.mark.parametrize(
    ("task", "value", "message"),
    [
        (CLASSIFICATION, ["a"], '"label" must be one label'),
        (MULTI_LABEL, "a", '"labels" must be a list of labels'),
        (REGRESSION, float("inf"), '"target" must be a finite number, not Infinity'),
        (REGRESSION, True, '"target" must be a finite number, not true'),
    ],
)
def test_stored_target_refuses_other_shapes(task: Task, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task.stored_target(value)
