"""FineTune(search=N, search_budget_seconds=S): checked against the server's limits and resolved into the worker's
`SearchSpec` (the search itself runs in the worker: engines/training/search.py)."""

from __future__ import annotations

import math
from typing import Any

from tuneserve.engines.training.spec import SearchSpec
from tuneserve.errors import InvalidArgument
from tuneserve.settings import TrainingSettings


def resolve(trials: int, budget_seconds: float, fixed: dict[str, Any], seed: int,
            settings: TrainingSettings) -> SearchSpec:
    """`fixed`: the hyperparameters the caller set (they stay as given in every trial); `seed`: the job's."""
    if trials < 0 or trials > settings.max_search_trials:
        raise InvalidArgument(
            f"search = {trials} is out of range [0, {settings.max_search_trials}] (0 = no search; the server's limit "
            "is training.max_search_trials)"
        )
    if not math.isfinite(budget_seconds) or budget_seconds < 0:
        raise InvalidArgument(
            f"search_budget_seconds = {budget_seconds} must be >= 0 (0 = the server's default, "
            f"{settings.default_search_budget_seconds:g} s)"
        )
    if budget_seconds and not trials:
        raise InvalidArgument("search_budget_seconds applies only to a search: set search = N (trials) too")
    if not trials:
        return SearchSpec()
    if settings.processes_per_job * settings.nodes_per_job > 1:
        raise InvalidArgument(
            "search runs its trials on one process; this server trains on several (training.processes_per_job, "
            "nodes_per_job): fine-tune without search, or on a server with one process per job"
        )
    return SearchSpec(
        trials=trials, budget_seconds=budget_seconds or settings.default_search_budget_seconds, seed=seed,
        fixed=sorted(fixed),
    )
