"""Resolve and validate FineTune hyperparameters: the caller's fields over the defaults of `Hyperparameters`, then
(`with_auto`) the rule-driven fields the caller left unset chosen from the data (`auto`), then (`for_task`) the task's
own choices: metric_for_best_model ("" = the task's default)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tuneserve.core.training import auto
from tuneserve.engines.training.seq_length import AUTO_SEQ_LENGTH
from tuneserve.engines.training.spec import Hyperparameters
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import Task

# The key of a job record's hyperparameters that lists the fields chosen automatically (JobResult.auto_hyperparameters).
AUTO_KEY = "auto_hyperparameters"

# field: (lowest, highest, lowest_inclusive)
_RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100, True),
    "max_steps": (0, 1_000_000, True),
    "batch_size": (1, 1024, True),
    "learning_rate": (0, 1, False),
    "head_learning_rate": (0, 1, False),
    "weight_decay": (0, 1, True),
    "warmup_ratio": (0, 0.99, True),
    "max_seq_length": (8, 512, True),   # or 0: from the data
    "early_stopping_patience": (0, 100, True),
    "seed": (0, 2**32 - 1, True),
    "validation_fraction": (0.01, 0.5, True),
    "label_smoothing": (0, 0.99, True),
    "head_dropout": (0, 0.99, True),
    "eval_steps": (0, 1_000_000, True),
    "trainable_layers": (0, 1000, True),
    "layer_lr_decay": (0, 1, False),
    "gradient_accumulation_steps": (1, 1024, True),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "regression_loss": ("mse", "huber"),
    "freeze": ("none", "all", "top_k"),
    "lr_scheduler": ("linear", "cosine", "constant"),
    "refit": ("auto", "true", "false"),
    "pair_encoding": ("cross", "bi"),
}


def resolve(overrides: dict[str, Any]) -> Hyperparameters:
    known = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = set(overrides) - known
    if unknown:
        raise InvalidArgument(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
    for name, value in overrides.items():
        if name in _RANGES:
            _check_range(name, value)
        if name in _CHOICES and value not in _CHOICES[name]:
            raise InvalidArgument(f"hyperparameters.{name} must be one of {', '.join(_CHOICES[name])}, not {value!r}")
    hp = dataclasses.replace(Hyperparameters(), **overrides)
    _check_strategy(hp)
    return hp


def with_auto(
    hp: Hyperparameters, overrides: dict[str, Any], shape: auto.DataShape, *, text: bool = True
) -> tuple[Hyperparameters, list[str]]:
    """hp with every rule-driven field the caller left out of `overrides` chosen from the data (`auto.choose`), and
    the names of those fields. max_seq_length concerns text backbones only (an image job keeps its default)."""
    chosen = auto.choose(shape, overrides)
    values = dict(chosen.values)
    if not text:
        values.pop("max_seq_length", None)
    return dataclasses.replace(hp, **values), [name for name in chosen.fields if name in values]


def from_record(record: dict[str, Any]) -> Hyperparameters:
    """A job record's hyperparameters (`JobRecord.hyperparameters`: the resolved fields plus AUTO_KEY)."""
    return resolve({name: value for name, value in record.items() if name != AUTO_KEY})


def for_task(hp: Hyperparameters, task: Task) -> Hyperparameters:
    """hp with metric_for_best_model resolved for the dataset's task: unset ("") is the task's default; another value
    must be one the task reports (INVALID_ARGUMENT naming the field, the task and what it allows)."""
    metric = hp.metric_for_best_model or task.default_metric
    if metric not in task.metrics_for_best:
        raise InvalidArgument(
            f"hyperparameters.metric_for_best_model must be one of {', '.join(task.metrics_for_best)} for a "
            f"{task.name} dataset, not {metric!r}"
        )
    return dataclasses.replace(hp, metric_for_best_model=metric)


def check_pairs(hp: Hyperparameters, text_pairs: bool) -> None:
    """pair_encoding=bi says how the two texts of a row are encoded: a dataset of single texts has nothing to say it
    of."""
    if hp.pair_encoding == "bi" and not text_pairs:
        raise InvalidArgument(
            "hyperparameters.pair_encoding=bi needs a dataset of text pairs (rows with \"text_pair\"); this dataset "
            "holds single texts: unset pair_encoding"
        )


def check_layers(hp: Hyperparameters, num_layers: int | None) -> None:
    """freeze=top_k must leave something frozen and something trainable: k in 1..the backbone's blocks (None: the
    backbone's depth is unknown until the worker loads it, which then checks)."""
    if hp.freeze == "top_k" and num_layers is not None and hp.trainable_layers > num_layers:
        raise InvalidArgument(
            f"hyperparameters.trainable_layers = {hp.trainable_layers} but the backbone has {num_layers} blocks "
            f"(transformer layers; MBConv stages for EfficientNet-Lite); choose 1..{num_layers} (freeze=none trains "
            "them all)"
        )


def _check_strategy(hp: Hyperparameters) -> None:
    """Combinations that contradict each other, or that would silently do nothing."""
    if hp.freeze == "top_k" and hp.trainable_layers < 1:
        raise InvalidArgument("hyperparameters.freeze=top_k needs trainable_layers >= 1 (the blocks that train)")
    if hp.freeze != "top_k" and hp.trainable_layers:
        raise InvalidArgument(
            f"hyperparameters.trainable_layers applies only to freeze=top_k (freeze is {hp.freeze!r}); unset it or "
            "set freeze=top_k"
        )
    if hp.freeze == "all" and hp.gradual_unfreezing:
        raise InvalidArgument(
            "hyperparameters.gradual_unfreezing contradicts freeze=all (the backbone never trains); use freeze=none "
            "or top_k with it"
        )
    if hp.freeze == "all" and hp.layer_lr_decay != 1.0:
        raise InvalidArgument(
            "hyperparameters.layer_lr_decay has no effect with freeze=all (no backbone layer trains); unset it"
        )


def _check_range(name: str, value: float) -> None:
    if name == "max_seq_length" and value == AUTO_SEQ_LENGTH:
        return
    low, high, inclusive = _RANGES[name]
    ok = (low <= value if inclusive else low < value) and value <= high
    if not ok:
        bracket = "[" if inclusive else "("
        raise InvalidArgument(f"hyperparameters.{name} = {value} is out of range {bracket}{low}, {high}]")
