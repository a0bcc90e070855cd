"""What is fitted on the validation split after training, in order: the calibration (`Task.calibrate`, when
hyperparameters.calibrate: a temperature, or multi-label Platt scaling per label), then the task's decision parameters
(`Task.tune`: multi-label thresholds) on the calibrated probabilities, so a threshold means the same probability the
model serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from tuneserve.tasks import Calibration, Task, TaskParams
from tuneserve.tasks.base import Target
from tuneserve.tasks.calibration import LOG_T_BOUNDS


def fit_after_training(
    task: Task, logits: np.ndarray, targets: Sequence[Target], labels: Sequence[str], params: TaskParams, *,
    calibrate: bool,
) -> tuple[TaskParams, Calibration | None]:
    fitted, calibration = task.calibrate(logits, targets, labels, params) if calibrate else (params, None)
    return task.tune(logits, targets, labels, fitted), calibration


def carried(params: TaskParams, first_scale: list[float], refit_scale: list[float]) -> TaskParams:
    """The first run's temperatures carried to a refit model: each multiplied by the refit model's logit scale over the
    first run's (`Task.logit_scale`, both on the same training rows, which both models trained on for the same
    epochs). A refit model whose logits are 20% larger is 20% more confident at the same temperature; the temperature
    fitted on the first run's validation outputs then under-corrects it by as much."""
    if not params.temperature or len(first_scale) != len(params.temperature) or len(refit_scale) != len(first_scale):
        return params
    low, high = float(np.exp(LOG_T_BOUNDS[0])), float(np.exp(LOG_T_BOUNDS[1]))
    temperature = [float(np.clip(t * r / f, low, high)) if f > 0 and r > 0 else t
                   for t, f, r in zip(params.temperature, first_scale, refit_scale, strict=True)]
    return replace(params, temperature=temperature)
