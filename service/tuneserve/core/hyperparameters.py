"""Resolve and validate FineTune hyperparameters: the caller's fields over the defaults of `Hyperparameters`."""

from __future__ import annotations

import dataclasses
from typing import Any

from tuneserve.engines.training.spec import Hyperparameters
from tuneserve.errors import InvalidArgument

# field: (lowest, highest, lowest_inclusive)
_RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, 100, True),
    "max_steps": (0, 1_000_000, True),
    "batch_size": (1, 1024, True),
    "learning_rate": (0, 1, False),
    "head_learning_rate": (0, 1, False),
    "weight_decay": (0, 1, True),
    "warmup_ratio": (0, 0.99, True),
    "max_seq_length": (8, 512, True),
    "early_stopping_patience": (0, 100, True),
    "seed": (0, 2**32 - 1, True),
    "validation_fraction": (0.01, 0.5, True),
    "label_smoothing": (0, 0.99, True),
    "head_dropout": (0, 0.99, True),
    "eval_steps": (0, 1_000_000, True),
}
_METRICS = ("macro_f1", "accuracy", "loss")


def resolve(overrides: dict[str, Any]) -> Hyperparameters:
    known = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = set(overrides) - known
    if unknown:
        raise InvalidArgument(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
    for name, value in overrides.items():
        if name in _RANGES:
            _check_range(name, value)
    metric = overrides.get("metric_for_best_model")
    if metric is not None and metric not in _METRICS:
        raise InvalidArgument(f"hyperparameters.metric_for_best_model must be one of {', '.join(_METRICS)}, "
                              f"not {metric!r}")
    return dataclasses.replace(Hyperparameters(), **overrides)


def _check_range(name: str, value: float) -> None:
    low, high, inclusive = _RANGES[name]
    ok = (low <= value if inclusive else low < value) and value <= high
    if not ok:
        bracket = "[" if inclusive else "("
        raise InvalidArgument(f"hyperparameters.{name} = {value} is out of range {bracket}{low}, {high}]")
