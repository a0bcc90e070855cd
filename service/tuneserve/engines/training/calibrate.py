"""What is fitted on the validation split after training, in order: the calibration (`Task.calibrate`, when
hyperparameters.calibrate: a temperature, or multi-label Platt scaling per label), then the task's decision parameters
(`Task.tune`: multi-label thresholds) on the calibrated probabilities, so a threshold means the same probability the
model serves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tuneserve.tasks import Calibration, Task, TaskParams
from tuneserve.tasks.base import Target


def fit_after_training(
    task: Task, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams, *,
    calibrate: bool,
) -> tuple[TaskParams, Calibration | None]:
    fitted, calibration = task.calibrate(logits, targets, labels, params) if calibrate else (params, None)
    return task.tune(logits, targets, labels, fitted), calibration
