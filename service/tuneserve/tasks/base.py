"""The task axis: what a problem shape decides, asked of one object instead of tested by name across the layers.

A `Task` owns the decisions that differ between single-label classification, multi-label and regression: the row's
target field and how an uploaded value is checked, the head's width, the loss, how raw head outputs (logits) become
served scores, the metrics and the one to pick the best checkpoint on, what is fitted besides the weights (a target
scaler before training, decision thresholds after it), the decoding of a served answer, the paired test between two
models, and the ONNX parity rule. `tuneserve.tasks.registry` lists the tasks; every layer looks one up by name.

What a trained model learned besides its weights is its `TaskParams`, stored beside the ONNX graph as `task.json` and
read back by the runtime and the evaluator, so training, Evaluate, Predict and the Open Inference Protocol decode
alike. The module needs only numpy, scipy and scikit-learn; the loss imports torch when a worker calls it.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

TASK_FILE = "task.json"

Target = Any  # a row's target as parsing wrote it: a label (str), a list of labels, or a float


@dataclass
class TaskParams:
    """What a trained model stores beside its weights to decode its outputs (`task.json`)."""

    task: str = "classification"
    text_pairs: bool = False
    pair_encoding: str = "cross"    # text pairs: "cross" (one sequence) | "bi" (each text alone, one shared encoder)
    thresholds: list[float] = field(default_factory=list)   # multi-label: one per label, in label order
    target_mean: float = 0.0                                 # regression: the scaler the head was trained against
    target_std: float = 1.0
    temperature: list[float] = field(default_factory=list)   # calibration: [] = none; one T, or one per label
    bias: list[float] = field(default_factory=list)          # multi-label calibration (Platt): [] = none; one per
                                                             # label, served as sigmoid(logit / T + b)

    def save(self, directory: Path) -> None:
        (directory / TASK_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> TaskParams:
        """The model's task parameters; a version written before tasks existed is single-label classification."""
        path = directory / TASK_FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in raw.items() if key in known})

    @property
    def bi_encoder(self) -> bool:
        """The model encodes text and text_pair separately: its inputs are both sides' token ids."""
        return self.text_pairs and self.pair_encoding == "bi"


@dataclass(frozen=True)
class Decoded:
    """One served answer, in the fields of tuneserve.v1.Prediction."""

    label: str = ""
    score: float = 0.0
    scores: list[tuple[str, float]] = field(default_factory=list)   # best first
    labels: list[str] = field(default_factory=list)                  # multi-label: over threshold, best first
    value: float = 0.0                                               # regression
    entities: list[dict[str, Any]] = field(default_factory=list)     # token classification: type, text, start, end, score


@dataclass(frozen=True)
class Source:
    """What a per-token task decodes a row against: the input text and its words with their character offsets
    (`tuneserve.tasks.tagging.split_words`: text[start:end] == word), in the order of the row's word scores."""

    text: str
    words: list[tuple[str, int, int]]


@dataclass(frozen=True)
class SpanError:
    """An entity one side has and the other lacks (token classification's report): a gold one no prediction has
    exactly ("missed") or a predicted one no gold entity has exactly ("spurious")."""

    kind: str          # missed | spurious
    sentence: int      # the row's index among those evaluated
    type: str
    start: int         # its words: tokens[start:end]
    end: int
    text: str          # its words joined by spaces
    other: str         # what the other side has over those words ("" = nothing), e.g. "ORG 'Acme Corp'"


@dataclass(frozen=True)
class LabelReport:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class TaskReport:
    """Everything Evaluate (and a job's validation figures) report for one model on one set of rows."""

    metrics: dict[str, float]
    per_label: list[LabelReport] = field(default_factory=list)       # classification: per class; multi-label: per label
    confusion_labels: list[str] = field(default_factory=list)        # classification: rows true, columns predicted
    confusion: list[list[int]] = field(default_factory=list)
    num_unknown_labels: int = 0                                      # rows naming a label the model does not know
    residuals: dict[str, float] = field(default_factory=dict)        # regression: mean, std, median_abs, p90_abs, max_abs
    points: list[tuple[float, float]] = field(default_factory=list)  # regression: (true, predicted) of a sample
    reliability: list[tuple[float, float, int]] = field(default_factory=list)  # (confidence, accuracy, rows) per bin

    span_errors: list[SpanError] = field(default_factory=list)       # token classification: missed/spurious examples
    span_counts: dict[str, int] = field(default_factory=dict)        # token classification: missed, spurious, wrong_type


@dataclass(frozen=True)
class Calibration:
    """A calibration fitted on the validation rows (JobResult.calibration): the temperatures (multi-label: and the
    biases of Platt scaling) and what they changed."""

    temperature: list[float]
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    bias: list[float] = field(default_factory=list)   # multi-label: one per label; [] = temperature scaling only

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Two models' outputs on the same rows, compared row by row."""

    test: str                 # mcnemar | mcnemar-holm | wilcoxon
    p_value: float
    only_first_better: int    # rows the first model gets right (or closer) and the second does not
    only_second_better: int
    leader: str = ""          # the model the test's statistic favours: "first" | "second" | "" (neither)


@dataclass(frozen=True)
class OutputTensor:
    """One Open Inference Protocol output of a batch."""

    name: str
    datatype: str             # FP32 | BYTES
    shape: list[int]
    data: np.ndarray | list[bytes]


class Task(ABC):
    """One problem shape. Subclasses are stateless singletons registered in `tuneserve.tasks.registry`."""

    name: str
    target_field: str                    # the data.jsonl key of a row's target: label | labels | target
    default_metric: str                  # metric_for_best_model when the user leaves it unset
    metrics_for_best: tuple[str, ...]    # what metric_for_best_model may name ("loss" included)
    lower_is_better: frozenset[str] = frozenset({"loss"})
    uses_labels: bool = True             # False: regression (no label set)
    guard_metric: str                    # what the int8 guard compares
    fit_metric: str                      # what the fit diagnosis compares between training and validation rows
                                         # (higher is better, at most 1: F1 or R²)
    min_labels: int = 0                  # distinct labels an uploaded dataset needs
    stratified: bool = False             # a random validation split keeps each label's share (`stratify_key`)
    per_token: bool = False              # True: the head answers per sub-word token (logits [N, T, L]), a row is a
                                         # sentence of words ({"tokens", "tags"}); the runtime reads words and
                                         # serves, and reports judge, per-word scores [N, W, L]
    correctness_metric: str | None = None  # the share of rows a model gets wholly right (accuracy, subset accuracy):
                                         # times the rows it counts them, which bound McNemar's test between two runs
                                         # that recorded only aggregates; None: the task has no such count

    def greater_is_better(self, metric: str) -> bool:
        return metric not in self.lower_is_better

    def num_outputs(self, labels: Sequence[str]) -> int:
        return len(labels)

    # -- data -------------------------------------------------------------------------------------------------------

    @abstractmethod
    def stored_target(self, value: Any) -> Target:
        """A stored row's target as the task uses it; ValueError says what is wrong with one of another shape."""

    @abstractmethod
    def label_set(self, target: Target) -> list[str]:
        """The labels a row's target names (counted per dataset and checked against the model's)."""

    @abstractmethod
    def read_target(self, value: Any, column: str, separator: str | None, check_label: Callable[[str], str]) -> Target:
        """An uploaded row's target in its stored form, from a JSON value (`separator` None) or a CSV cell (multi-label:
        labels joined by `separator`). `check_label` checks one label and returns it stripped; ValueError says what is
        wrong with the value (the caller names the line)."""

    def stat_value(self, target: Target) -> float | None:
        """The number per row that `dataset_stats` summarises (labels per row, the target), or None."""
        return None

    def dataset_stats(self, values: np.ndarray) -> dict[str, Any]:
        """A dataset's statistics (DatasetRecord.stats) from the `stat_value` of every row, in row order."""
        return {}

    def prepare(self, targets: Sequence[Target], params: TaskParams) -> TaskParams:
        """Parameters fitted on the training targets before training (regression: the scaler)."""
        return params

    @abstractmethod
    def encode_targets(self, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> np.ndarray:
        """The training targets the loss takes: class indices (int64), multi-hot rows or standardised values
        (float32)."""

    def evidence_columns(self, targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray:
        """The targets as real-valued columns [N, K] for LogME (RecommendBackbone): the training encoding (multi-hot
        rows, a standardised value); the score is the mean evidence over the columns."""
        encoded = self.encode_targets(targets, labels, self.prepare(targets, TaskParams(task=self.name)))
        return np.asarray(encoded, dtype=np.float64).reshape(len(targets), -1)

    def stratify_key(self, target: Target) -> str | None:
        """What a random validation split keeps in proportion; None = a plain shuffle split."""
        return None

    def split_strata(self, targets: Sequence[Target], max_strata: int) -> list[str] | None:
        """One stratum per row for the validation split (`stratify_key`), or None for a plain shuffle. A task whose
        strata are a best effort (multi-label) keeps to `max_strata` and at least 2 rows each, the bounds of a
        stratified split; classification's are exact, and a split they do not allow is an error the caller reports."""
        keys = [self.stratify_key(target) for target in targets]
        return None if any(key is None for key in keys) else [str(key) for key in keys]

    # -- training ---------------------------------------------------------------------------------------------------

    @abstractmethod
    def loss(
        self, logits: torch.Tensor, targets: torch.Tensor, *, weights: torch.Tensor | None, options: dict[str, Any]
    ) -> torch.Tensor:
        """The training loss in fp32. `weights`: per-class (classification) or per-label pos_weight (multi-label);
        `options`: label_smoothing, regression_loss."""

    def loss_weights(self, targets: Sequence[Target], labels: Sequence[str]) -> np.ndarray | None:
        """Balancing weights from the training targets (class_weighting), or None where the task has none."""
        return None

    def tune(self, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskParams:
        """Parameters fitted on the validation split after training (multi-label: the thresholds)."""
        return params

    def calibrate(
        self, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams
    ) -> tuple[TaskParams, Calibration | None]:
        """Calibration fitted on the validation rows' raw outputs (tasks/calibration.py: temperature scaling, or
        multi-label Platt scaling), stored in params.temperature (and params.bias) for `outputs` to apply; None where the
        task has nothing to calibrate (regression)."""
        return params, None

    def logit_scale(self, logits: np.ndarray) -> list[float]:
        """How large raw outputs are, one figure per fitted temperature (what a temperature divides), for carrying a
        calibration to a refit model (engines/training/calibrate.py: `carried`); [] where there is none to carry."""
        return []

    # -- outputs ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def outputs(self, logits: np.ndarray, params: TaskParams) -> np.ndarray:
        """Served scores of raw head outputs [N, num_outputs]: probabilities, or values in the target's units."""

    @abstractmethod
    def decode(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams, top_k: int, source: Source | None = None
    ) -> Decoded:
        """One row of `outputs` as a Predict answer; top_k limits `scores` (0 = all). `source`: the row's text and
        words, for a `per_token` task (None for the others)."""

    @abstractmethod
    def open_inference(
        self, scores: np.ndarray, labels: Sequence[str], params: TaskParams,
        sources: Sequence[Source | None] = (),
    ) -> list[OutputTensor]:
        """A batch of `outputs` as the Open Inference Protocol's output tensors (`sources`: each row's, for a
        `per_token` task)."""

    @abstractmethod
    def output_names(self) -> list[tuple[str, str, int]]:
        """(name, datatype, width) of each Open Inference output; width -1 = the number of labels."""

    # -- evaluation -------------------------------------------------------------------------------------------------

    def report_labels(self, labels: Sequence[str]) -> list[str]:
        """The names the rows of `TaskReport.per_label` take for a model of these labels (token classification:
        the entity types)."""
        return list(labels)

    @abstractmethod
    def report(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> TaskReport:
        """Every metric of the task, by name, and its tables, of served scores against the rows' targets."""

    def metrics(self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams) -> dict[str, float]:
        return self.report(scores, targets, labels, params).metrics

    def metrics_of_logits(
        self, logits: np.ndarray, encoded: np.ndarray, labels: Sequence[str], params: TaskParams
    ) -> dict[str, float]:
        """The metrics the Trainer reports at each evaluation, from its logits and encoded targets."""
        return self.metrics(self.outputs(logits, params), self.decode_targets(encoded, labels, params), labels, params)

    @abstractmethod
    def decode_targets(self, encoded: np.ndarray, labels: Sequence[str], params: TaskParams) -> list[Target]:
        """`encode_targets` undone."""

    @abstractmethod
    def outcomes(
        self, scores: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams,
        universe: Sequence[str],
    ) -> np.ndarray:
        """Per-row outcomes a paired test compares: right or wrong (bool [N]; multi-label: per label of `universe`,
        the dataset's labels, bool [N, len(universe)]), or the absolute error (regression, float [N])."""

    @abstractmethod
    def paired_test(self, first: np.ndarray, second: np.ndarray) -> PairedTest:
        """Whether two models' `outcomes` on the same rows differ, by the test that fits the task."""

    # -- export -----------------------------------------------------------------------------------------------------

    def parity(self, reference: np.ndarray, exported: np.ndarray, params: TaskParams) -> tuple[float, str]:
        """Max |diff| of raw head outputs, and a problem with the decisions ("" = same decisions)."""
        diff = float(np.max(np.abs(reference - exported))) if reference.size else 0.0
        return diff, ""
