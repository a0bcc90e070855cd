"""What the CLI shows per task: the task's name and its headline metrics (the server's `tuneserve.tasks` decides the
metrics; this is only the order the tables show them in)."""

from __future__ import annotations

from tuneserve_client.proto.tuneserve.v1.common_pb2 import Task

# The metrics a table shows first for each task: the best-checkpoint default first.
TASK_METRICS: dict[int, tuple[str, ...]] = {
    Task.TASK_UNSPECIFIED: ("macro_f1", "accuracy"),
    Task.TASK_CLASSIFICATION: ("macro_f1", "accuracy"),
    Task.TASK_MULTI_LABEL: ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss"),
    Task.TASK_REGRESSION: ("rmse", "mae", "r2", "pearson", "spearman"),
    Task.TASK_TOKEN_CLASSIFICATION: ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"),
}


def task_metrics(task: int) -> tuple[str, ...]:
    return TASK_METRICS.get(task, TASK_METRICS[Task.TASK_CLASSIFICATION])


def task_name(task: int, text_pairs: bool = False) -> str:
    """"multi-label", "regression", "classification" (also for TASK_UNSPECIFIED), with ", text pairs" for pairs."""
    name = Task.Name(task).removeprefix("TASK_").lower() if task in Task.values() and task else "classification"
    return name.replace("_", "-") + (", text pairs" if text_pairs else "")
