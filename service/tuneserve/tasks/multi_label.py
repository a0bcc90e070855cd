"""Multi-label classification: any number of labels per row (none included). One sigmoid per label trained with
binary cross-entropy (class weighting as `pos_weight`), Platt scaling per label (a temperature and a bias: the bias
undoes the shift `pos_weight` gives each logit) and then a decision threshold per label (shrunk toward one shared
threshold by how few validation positives the label has), both fitted on the validation split after training,
micro F1 to pick the best checkpoint, and McNemar per label with Holm's correction between models."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

from tuneserve.tasks import calibration
from tuneserve.tasks.base import (
    Calibration,
    Decoded,
    LabelReport,
    OutputTensor,
    PairedTest,
    Source,
    Target,
    Task,
    TaskParams,
    TaskReport,
)
from tuneserve.tasks.stats import holm, leader, mcnemar_p

if TYPE_CHECKING:
    import torch

DEFAULT_THRESHOLD = 0.5
# Thresholds tried per label; the middle of the best-scoring run wins, so a flat optimum does not sit on its edge.
CANDIDATES = np.round(np.linspace(0.02, 0.98, 49), 2)
MAX_POS_WEIGHT = 50.0
# A label's own F1-best threshold and the shared (micro-F1-best) one weigh the same at this many positive validation
# rows (`MultiLabel.tune`).
SHRINK_POSITIVES = 10
# A served score this close to a threshold may fall either side of it between PyTorch and ONNX Runtime.
PARITY_MARGIN = 1e-4


def tuned_thresholds(probabilities: np.ndarray, truth: np.ndarray, shrink: float = SHRINK_POSITIVES) -> list[float]:
    """`MultiLabel.tune`'s rule on probabilities and boolean truth [N, L]: each label's F1-best threshold shrunk toward
    the micro-F1-best shared one, (n * own + shrink * shared) / (n + shrink) for a label with n positive rows."""
    shared = _best_threshold(probabilities, truth)
    thresholds = []
    for j in range(truth.shape[1]):
        positives = int(truth[:, j].sum())
        if not positives:
            thresholds.append(shared)
            continue
        own = _best_threshold(probabilities[:, j], truth[:, j])
        thresholds.append(round((positives * own + shrink * shared) / (positives + shrink), 4))
    return thresholds


def _best_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    """The CANDIDATES threshold with the best F1 of `scores >= threshold` against the boolean `truth` (any shape,
    pooled: micro F1 for a matrix), counted from the sorted scores rather than a candidates x scores matrix."""
    positives, negatives = np.sort(scores[truth]), np.sort(scores[~truth])
    tp = len(positives) - np.searchsorted(positives, CANDIDATES, side="left")
    fp = len(negatives) - np.searchsorted(negatives, CANDIDATES, side="left")
    f1 = 2 * tp / np.maximum(tp + fp + len(positives), 1)
    best = np.flatnonzero(f1 == f1.max())
    return float(CANDIDATES[best[len(best) // 2]])


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    result: np.ndarray = (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)
    return result


class MultiLabel(Task):
    name = "multi_label"
    target_field = "labels"
    default_metric = "micro_f1"
    metrics_for_best = ("micro_f1", "macro_f1", "samples_f1", "loss")
    guard_metric = "micro_f1"
    fit_metric = "micro_f1"
    min_labels = 1
    correctness_metric = "subset_accuracy"

    def stored_target(self, value: Any) -> Target:
        if not isinstance(value, list) or any(isinstance(label, (list, dict)) or label is None for label in value):
            raise ValueError(f'"labels" must be a list of labels, not {json.dumps(value)[:80]}')
        return [str(label) for label in value]

    def label_set(self, target: Target) -> list[str]:
        return [str(label) for label in target]

    def read_target(self, value: Any, column: str, separator: str | None, check_label: Callable[[str], str]) -> Target:
        """The row's distinct labels in the order given. A CSV cell is split on `separator` (empty parts dropped, so
        an empty cell is no label); a JSON value must be a list of strings or integers (an empty list is no label)."""
        if separator is not None:
            parts = [part for part in str(value).split(separator) if part.strip()]
        elif isinstance(value, list):
            parts = value
            for index, part in enumerate(parts):
                if isinstance(part, bool) or not isinstance(part, (str, int)):
                    raise ValueError(f"field {column!r}: item {index} of the list must be a string or an integer")
        else:
            kind = "a string" if isinstance(value, str) else type(value).__name__
            raise ValueError(f"field {column!r} must be a list of labels such as [\"a\", \"b\"] (an empty list for "
                             f"none), not {kind}")
        return list(dict.fromkeys(check_label(str(part)) for part in parts))

    def stat_value(self, target: Target) -> float | None:
        return float(len(target))

    def dataset_stats(self, values: np.ndarray) -> dict[str, Any]:
        """{"labels_per_row": {mean, max, rows_without_labels}}."""
        counts = np.asarray(values, dtype=np.float64)
        return {"labels_per_row": {
            "mean": float(counts.mean()) if counts.size else 0.0,
            "max": int(counts.max()) if counts.size else 0,
            "rows_without_labels": int(np.count_nonzero(counts == 0)),
        }}

    def split_strata(self, targets: Sequence[Target], max_strata: int) -> list[str] | None:
        """Each row's rarest label (by its count in these rows; "" for a row with none), so the validation split gets
        its share of every label's positives: a plain shuffle can leave a rare label with none, and then that label's
        calibration and threshold are not fitted at all. Strata of one row, and the smallest past `max_strata`, are
        pooled (into the largest stratum when the pool would be a single row)."""
        counts = Counter(label for target in targets for label in target)
        keys = [min(target, key=lambda label: (counts[label], label)) if target else "" for target in targets]
        sizes = Counter(keys).most_common()
        kept = {key for key, size in sizes[: max(0, max_strata - 1)] if size >= 2}
        pooled = [key for key in keys if key not in kept]
        pool = sizes[0][0] if len(pooled) == 1 and kept else "\x00pooled"
        return [key if key in kept else pool for key in keys]

    def encode_targets(self, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> np.ndarray:
        return _multi_hot(targets, labels)

    def decode_targets(self, encoded: np.ndarray, labels: Sequence[str], params: TaskParams) -> list[Target]:
        return [[labels[int(j)] for j in np.flatnonzero(row > 0.5)] for row in encoded]

    def loss_weights(self, targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray | None:
        """pos_weight = negatives / positives of each label (capped at 50; 1 for a label with no positive rows)."""
        hot = _multi_hot(targets, labels)
        positives = hot.sum(axis=0)
        negatives = len(hot) - positives
        weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
        return np.clip(weights, 1.0 / MAX_POS_WEIGHT, MAX_POS_WEIGHT).astype(np.float32)

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None, options: dict[str, Any]
    ) -> torch.Tensor:
        from torch.nn import functional

        smoothing = float(options.get("label_smoothing", 0.0))
        soft = targets.float() * (1.0 - smoothing) + 0.5 * smoothing
        return functional.binary_cross_entropy_with_logits(logits.float(), soft, pos_weight=weights)

    def calibrate(
        self, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams
    ) -> tuple[TaskParams, Calibration | None]:
        """Platt scaling per label (a temperature and a bias, `calibration.fit_binary_platt`), each minimising that
        label's binary NLL on the validation rows; fitted before the thresholds, which are tuned on the calibrated
        probabilities."""
        z = np.asarray(logits, dtype=np.float64)
        truth = _multi_hot(targets, labels).astype(np.float64)
        temperatures, biases = calibration.fit_binary_platt(z, truth)
        t, b = np.array(temperatures, dtype=np.float64), np.array(biases, dtype=np.float64)
        fitted = TaskParams(**{**params.__dict__, "temperature": temperatures, "bias": biases})
        return fitted, Calibration(
            temperatures,
            calibration.expected_calibration_error(calibration.sigmoid(z), truth),
            calibration.expected_calibration_error(calibration.sigmoid(z / t + b), truth),
            calibration.binary_nll(z, truth), calibration.binary_nll(z, truth, t, b),
            bias=biases,
        )

    def tune(self, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskParams:
        """Each label's threshold on the validation rows' served (calibrated) probabilities: the one maximising that
        label's F1, shrunk toward the one threshold that maximises micro F1 over every label, in proportion to how
        few positive validation rows the label has: (n * own + SHRINK_POSITIVES * shared) / (n + SHRINK_POSITIVES).
        A label's own optimum on a handful of positives is mostly noise (its F1 jumps with each row), while the
        shared one rests on all of them; a label with no positive row takes the shared threshold."""
        truth = _multi_hot(targets, labels).astype(bool)
        return TaskParams(**{**params.__dict__, "thresholds": tuned_thresholds(self.outputs(logits, params), truth)})

    def outputs(self, logits: np.ndarray, params: TaskParams) -> np.ndarray:
        """sigmoid(logits / T + b) per label: the stored Platt scaling, or a part of it a model lacks (a version
        calibrated before biases existed has temperatures only; one not calibrated serves the raw sigmoid)."""
        width = logits.shape[-1]
        temperature = params.temperature if len(params.temperature) == width else [1.0] * width
        bias = params.bias if len(params.bias) == width else [0.0] * width
        return _sigmoid(logits.astype(np.float32) / np.asarray(temperature, dtype=np.float32)
                        + np.asarray(bias, dtype=np.float32))

    def decode(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, top_k: int, source: Source | None = None
    ) -> Decoded:
        order = np.argsort(-scores, kind="stable")
        above = scores >= _thresholds(params, len(labels))
        chosen = [labels[i] for i in order if above[i]]
        shown = order[:top_k] if top_k else order
        best = int(order[0])
        return Decoded(
            label=labels[best], score=float(scores[best]), scores=[(labels[i], float(scores[i])) for i in shown],
            labels=chosen,
        )

    def output_names(self) -> list[tuple[str, str, int]]:
        return [("probabilities", "FP32", -1), ("labels", "BYTES", 1)]

    def open_inference(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, sources: Sequence[Source | None] = (),
    ) -> list[OutputTensor]:
        chosen = [json.dumps(self.decode(row, labels, params, 0).labels).encode() for row in scores]
        return [
            OutputTensor("probabilities", "FP32", list(scores.shape), scores.astype(np.float32)),
            OutputTensor("labels", "BYTES", [len(chosen), 1], chosen),
        ]

    def report(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskReport:
        every, truth, predicted = self._decisions(scores, targets, labels, params)
        known = set(labels)
        micro = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
        p, r, f, s = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
        metrics = {
            "micro_f1": float(micro[2]), "micro_precision": float(micro[0]), "micro_recall": float(micro[1]),
            "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
            "samples_f1": float(f1_score(truth, predicted, average="samples", zero_division=1)),
            "subset_accuracy": float(np.mean(np.all(truth == predicted, axis=1))) if len(truth) else 0.0,
            "hamming_loss": float(hamming_loss(truth, predicted)) if len(truth) else 0.0,
        }
        # NOTE: every label's probability is a yes/no event of its own (labels the model knows only).
        known_truth = truth[:, : len(labels)]
        metrics["ece"] = calibration.expected_calibration_error(scores, known_truth)
        return TaskReport(
            metrics=metrics,
            per_label=[LabelReport(lab, float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i, lab in enumerate(every)],
            num_unknown_labels=sum(1 for t in targets if set(self.label_set(t)) - known),
            reliability=calibration.reliability(scores, known_truth),
        )

    def outcomes(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams,
        universe: Sequence[str],
    ) -> np.ndarray:
        decided = scores >= _thresholds(params, len(labels))
        column = {label: j for j, label in enumerate(labels)}
        predicted = np.zeros((len(scores), len(universe)), dtype=bool)
        for k, label in enumerate(universe):
            if label in column:
                predicted[:, k] = decided[:, column[label]]
        same: np.ndarray = predicted == _multi_hot(targets, universe).astype(bool)
        return same

    def paired_test(self, first: np.ndarray, second: np.ndarray) -> PairedTest:
        """McNemar on each label's decisions, Holm-corrected; p is the smallest corrected p, and the label it belongs
        to says which model leads. The counts are of whole rows (every label right)."""
        discordant = [
            (int(np.sum(first[:, k] & ~second[:, k])), int(np.sum(second[:, k] & ~first[:, k])))
            for k in range(first.shape[1])
        ]
        corrected = holm([mcnemar_p(b, c) for b, c in discordant])
        decisive = int(np.argmin(corrected)) if corrected else -1
        whole_a, whole_b = first.all(axis=1), second.all(axis=1)
        return PairedTest(
            "mcnemar-holm", min(corrected, default=1.0),
            int(np.sum(whole_a & ~whole_b)), int(np.sum(whole_b & ~whole_a)),
            leader(*discordant[decisive]) if corrected else "",
        )

    def parity(self, reference: np.ndarray, exported: np.ndarray, params: TaskParams) -> tuple[float, str]:
        diff, _ = super().parity(reference, exported, params)
        thresholds = _thresholds(params, reference.shape[1] if reference.ndim == 2 else 0)
        a, b = self.outputs(reference, params), self.outputs(exported, params)
        clear = np.abs(a - thresholds) > PARITY_MARGIN
        flips = int(np.sum(((a >= thresholds) != (b >= thresholds)) & clear))
        return diff, f"{flips} label decisions differ at the tuned thresholds" if flips else ""

    def _decisions(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The label columns (the model's, then labels only the rows name), true and predicted multi-hot rows."""
        unknown = sorted({label for t in targets for label in self.label_set(t)} - set(labels))
        every = [*labels, *unknown]
        truth = _multi_hot(targets, every).astype(bool)
        predicted = np.zeros_like(truth)
        if len(scores):
            predicted[:, : len(labels)] = scores >= _thresholds(params, len(labels))
        return every, truth, predicted


def _thresholds(params: TaskParams, count: int) -> np.ndarray:
    if len(params.thresholds) == count:
        return np.array(params.thresholds, dtype=np.float32)
    return np.full(count, DEFAULT_THRESHOLD, dtype=np.float32)


def _multi_hot(targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray:
    column = {label: j for j, label in enumerate(labels)}
    hot = np.zeros((len(targets), len(labels)), dtype=np.float32)
    for i, target in enumerate(targets):
        for label in target:
            j = column.get(str(label))
            if j is not None:
                hot[i, j] = 1.0
    return hot
