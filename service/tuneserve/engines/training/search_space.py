"""The space a search (engines/training/search.py) samples: each hyperparameter the caller left unset, its range, and
the point of the space that is the job's own hyperparameters (the first trial)."""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from tuneserve.engines.training.spec import Hyperparameters


def suggest(
    trial: optuna.Trial | optuna.trial.FixedTrial, hp: Hyperparameters, fixed: set[str], layers: int | None
) -> Hyperparameters:
    """The trial's hyperparameters: each field of the space the caller did not set is sampled, the rest stay (a
    FixedTrial of a finished trial's params gives that trial's hyperparameters again)."""
    chosen: dict[str, Any] = {}

    def pick(name: str, sample: Any) -> None:
        if name not in fixed:
            chosen[name] = sample(name)

    pick("learning_rate", lambda n: trial.suggest_float(n, 1e-5, 2e-4, log=True))
    pick("head_learning_rate", lambda n: trial.suggest_float(n, 1e-4, 1e-2, log=True))
    if hp.max_steps <= 0:
        pick("epochs", lambda n: trial.suggest_int(n, 2, max(6, hp.epochs)))
    pick("head_dropout", lambda n: trial.suggest_float(n, 0.0, 0.3))
    pick("weight_decay", lambda n: trial.suggest_float(n, 0.0, 0.1))
    pick("warmup_ratio", lambda n: trial.suggest_float(n, 0.0, 0.2))
    if layers is not None and layers > 1 and not {"freeze", "trainable_layers", "gradual_unfreezing"} & fixed:
        freeze = trial.suggest_categorical("freeze", ["none", "top_k"])
        chosen["freeze"] = freeze
        chosen["trainable_layers"] = trial.suggest_int("trainable_layers", 1, layers - 1) if freeze == "top_k" else 0
    if chosen.get("freeze", hp.freeze) != "all":
        pick("layer_lr_decay", lambda n: trial.suggest_float(n, 0.7, 1.0))
    return dataclasses.replace(hp, **chosen)


def own_params(hp: Hyperparameters, fixed: set[str], layers: int | None) -> dict[str, Any]:
    """The job's own hyperparameters as the params `suggest` would sample, for the first trial: a FixedTrial of
    them gives `hp` back."""
    names = ["learning_rate", "head_learning_rate", *(["epochs"] if hp.max_steps <= 0 else []), "head_dropout",
             "weight_decay", "warmup_ratio"]
    params: dict[str, Any] = {name: getattr(hp, name) for name in names if name not in fixed}
    if layers is not None and layers > 1 and not {"freeze", "trainable_layers", "gradual_unfreezing"} & fixed:
        params["freeze"] = hp.freeze if hp.freeze in ("none", "top_k") else "none"
        if params["freeze"] == "top_k":
            params["trainable_layers"] = hp.trainable_layers
    if params.get("freeze", hp.freeze) != "all" and "layer_lr_decay" not in fixed:
        params["layer_lr_decay"] = hp.layer_lr_decay
    return params
