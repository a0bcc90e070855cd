"""Single-label classification: one label per row, a softmax head trained with (optionally class-weighted,
label-smoothed) cross-entropy, argmax decisions; McNemar's exact test between two models."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.utils.class_weight import compute_class_weight

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
from tuneserve.tasks.stats import leader, mcnemar_p

if TYPE_CHECKING:
    import torch

# A top-two gap this small may fall either way between PyTorch and ONNX Runtime.
PARITY_MARGIN = 1e-4


class Classification(Task):
    name = "classification"
    target_field = "label"
    default_metric = "macro_f1"
    metrics_for_best = ("macro_f1", "accuracy", "loss")
    guard_metric = "macro_f1"
    fit_metric = "macro_f1"
    min_labels = 2
    stratified = True
    correctness_metric = "accuracy"

    def stored_target(self, value: Any) -> Target:
        if isinstance(value, (list, dict)) or value is None:
            raise ValueError(f'"label" must be one label, not {json.dumps(value)[:80]}')
        return str(value)

    def label_set(self, target: Target) -> list[str]:
        return [str(target)]

    def read_target(self, value: Any, column: str, separator: str | None, check_label: Callable[[str], str]) -> Target:
        if isinstance(value, list):
            raise ValueError(
                f"field {column!r} holds a list: one file holds one task, and a list of labels is a multi-label "
                "target (field 'labels', or set task)"
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"field {column!r} must be a string or an integer")
        return check_label(str(value))

    def evidence_columns(self, targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray:
        """One-vs-rest indicator columns: LogME's classification score is the mean evidence over the classes."""
        index = self.encode_targets(targets, labels, TaskParams())
        columns: np.ndarray = np.eye(len(labels), dtype=np.float64)[index]
        return columns

    def stratify_key(self, target: Target) -> str | None:
        return str(target)

    def encode_targets(self, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> np.ndarray:
        index = {label: i for i, label in enumerate(labels)}
        return np.array([index[str(t)] for t in targets], dtype=np.int64)

    def decode_targets(self, encoded: np.ndarray, labels: Sequence[str], params: TaskParams) -> list[Target]:
        return [labels[int(i)] for i in encoded]

    def loss_weights(self, targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray | None:
        """Inverse-frequency ("balanced") class weights over the training rows; a label with no rows gets 0."""
        counts = Counter(str(t) for t in targets)
        present = np.array([i for i, label in enumerate(labels) if counts[label] > 0])
        y = np.repeat(present, [counts[labels[i]] for i in present])
        weights = np.zeros(len(labels), dtype=np.float32)
        weights[present] = compute_class_weight("balanced", classes=present, y=y)
        return weights

    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None, options: dict[str, Any]
    ) -> torch.Tensor:
        from torch.nn import functional

        return functional.cross_entropy(
            logits.float(), targets, weight=weights, label_smoothing=float(options.get("label_smoothing", 0.0))
        )

    def calibrate(
        self, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams
    ) -> tuple[TaskParams, Calibration | None]:
        """One temperature for the model, minimising the NLL of the validation rows (rows of unknown labels aside)."""
        index = {label: i for i, label in enumerate(labels)}
        known = [i for i, t in enumerate(targets) if str(t) in index]
        z = np.asarray(logits, dtype=np.float64)[known]
        y = np.array([index[str(targets[i])] for i in known], dtype=np.int64)
        t = calibration.fit_softmax_temperature(z, y)
        fitted = TaskParams(**{**params.__dict__, "temperature": [t]})
        before, after = calibration.softmax(z), calibration.softmax(z / t)
        return fitted, Calibration(
            [t], _ece(before, y), _ece(after, y), calibration.softmax_nll(z, y), calibration.softmax_nll(z, y, t)
        )

    def logit_scale(self, logits: np.ndarray) -> list[float]:
        return [calibration.logit_scale(logits)] if logits.ndim == 2 and logits.shape[1] > 1 and len(logits) else []

    def outputs(self, logits: np.ndarray, params: TaskParams) -> np.ndarray:
        z = logits / params.temperature[0] if params.temperature else logits
        shifted = z - z.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        result: np.ndarray = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return result

    def decode(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, top_k: int, source: Source | None = None
    ) -> Decoded:
        order = np.argsort(-scores, kind="stable")
        if top_k:
            order = order[:top_k]
        ranked = [(labels[i], float(scores[i])) for i in order]
        return Decoded(label=ranked[0][0], score=ranked[0][1], scores=ranked)

    def output_names(self) -> list[tuple[str, str, int]]:
        return [("probabilities", "FP32", -1), ("label", "BYTES", 1)]

    def open_inference(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, sources: Sequence[Source | None] = (),
    ) -> list[OutputTensor]:
        top = [labels[int(i)].encode() for i in scores.argmax(axis=1)]
        return [
            OutputTensor("probabilities", "FP32", list(scores.shape), scores.astype(np.float32)),
            OutputTensor("label", "BYTES", [len(top), 1], top),
        ]

    def report(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskReport:
        y_true = [str(t) for t in targets]
        y_pred = [labels[int(i)] for i in scores.argmax(axis=1)] if len(y_true) else []
        unknown = sorted(set(y_true) - set(labels))
        every = [*labels, *unknown]
        macro = precision_recall_fscore_support(y_true, y_pred, labels=every, average="macro", zero_division=0)
        weighted = precision_recall_fscore_support(y_true, y_pred, labels=every, average="weighted", zero_division=0)
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=every, average=None, zero_division=0)
        metrics = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_precision": float(macro[0]), "macro_recall": float(macro[1]), "macro_f1": float(macro[2]),
            "weighted_precision": float(weighted[0]), "weighted_recall": float(weighted[1]),
            "weighted_f1": float(weighted[2]),
        }
        confidence = scores.max(axis=1) if len(y_true) else np.zeros(0)
        correct = np.array([a == b for a, b in zip(y_true, y_pred, strict=True)], dtype=bool)
        metrics["ece"] = calibration.expected_calibration_error(confidence, correct)
        return TaskReport(
            metrics=metrics,
            per_label=[LabelReport(lab, float(p[i]), float(r[i]), float(f[i]), int(s[i])) for i, lab in enumerate(every)],
            confusion_labels=every,
            confusion=confusion_matrix(y_true, y_pred, labels=every).tolist(),
            num_unknown_labels=sum(1 for y in y_true if y in unknown),
            reliability=calibration.reliability(confidence, correct),
        )

    def outcomes(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams,
        universe: Sequence[str],
    ) -> np.ndarray:
        predicted = np.array([labels[int(i)] for i in scores.argmax(axis=1)], dtype=object)
        return np.asarray(predicted == np.array([str(t) for t in targets], dtype=object), dtype=bool)

    def paired_test(self, first: np.ndarray, second: np.ndarray) -> PairedTest:
        only_a, only_b = int(np.sum(first & ~second)), int(np.sum(second & ~first))
        return PairedTest("mcnemar", mcnemar_p(only_a, only_b), only_a, only_b, leader(only_a, only_b))

    def parity(self, reference: np.ndarray, exported: np.ndarray, params: TaskParams) -> tuple[float, str]:
        """Max |diff|, and rows whose top class differs (where the reference's top two are more than PARITY_MARGIN
        apart: a near-tie may fall either way between PyTorch and ONNX Runtime)."""
        diff, _ = super().parity(reference, exported, params)
        if not reference.size:
            return diff, ""
        top = np.sort(reference, axis=1)
        clear = top[:, -1] - top[:, -2] > PARITY_MARGIN if reference.shape[1] > 1 else np.ones(len(reference), bool)
        flips = int(np.sum((reference.argmax(axis=1) != exported.argmax(axis=1)) & clear))
        return diff, f"{flips} rows' top class differs" if flips else ""


def _ece(probabilities: np.ndarray, targets: np.ndarray) -> float:
    return calibration.expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == targets)
