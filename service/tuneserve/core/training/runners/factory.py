"""The runner `training.runner` names, checked against the other training settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneserve.core.training.runners.base import Runner
from tuneserve.core.training.runners.local import LocalProcessRunner
from tuneserve.errors import ConfigError

if TYPE_CHECKING:
    from tuneserve.settings import Settings


def build_runner(settings: Settings) -> Runner:
    """The runner `training.runner` names; raises ConfigError for settings that cannot work together."""
    training = settings.training
    if training.runner == "kubernetes":
        from tuneserve.core.training.runners.kubernetes import KubernetesJobRunner

        return KubernetesJobRunner.from_settings(settings)
    if training.nodes_per_job > 1:
        raise ConfigError(
            f"training.nodes_per_job = {training.nodes_per_job} needs training.runner = kubernetes "
            "(the local runner trains on this machine only; use processes_per_job for its GPUs)"
        )
    return LocalProcessRunner(training.cancel_grace_seconds, processes=training.processes_per_job)
