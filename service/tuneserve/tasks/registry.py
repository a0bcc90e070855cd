"""Every task, by name: the one place a task is registered."""

from __future__ import annotations

from tuneserve.tasks.base import Task
from tuneserve.tasks.classification import Classification
from tuneserve.tasks.multi_label import MultiLabel
from tuneserve.tasks.regression import Regression
from tuneserve.tasks.token_classification import TokenClassification

TASKS: dict[str, Task] = {task.name: task for task in (Classification(), MultiLabel(), Regression(), TokenClassification())}
DEFAULT_TASK = "classification"


def get_task(name: str) -> Task:
    """The task called `name` ("" = classification); KeyError names the known ones."""
    try:
        return TASKS[name or DEFAULT_TASK]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None
