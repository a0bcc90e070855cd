"""Problem shapes (single-label classification, multi-label, regression, token classification): see `tuneserve.tasks.base`."""

from tuneserve.tasks.base import (
    TASK_FILE,
    Calibration,
    Decoded,
    OutputTensor,
    PairedTest,
    Source,
    SpanError,
    Task,
    TaskParams,
    TaskReport,
)
from tuneserve.tasks.registry import DEFAULT_TASK, TASKS, get_task

__all__ = [
    "DEFAULT_TASK", "TASKS", "TASK_FILE", "Calibration", "Decoded", "OutputTensor", "PairedTest", "Source", "SpanError",
    "Task", "TaskParams", "TaskReport", "get_task",
]
