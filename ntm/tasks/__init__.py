"""The paper's tasks (§4), NumPy only: importing this package never imports TensorFlow.

``get_task(name)`` is the one registry; ``task_from_metadata`` rebuilds a task from the
metadata an exported model carries.
"""

from __future__ import annotations

from typing import Any

from ntm.tasks.base import Batch, InvalidRequest, bit_errors
from ntm.tasks.copy import CopyTask
from ntm.tasks.recall import RecallTask
from ntm.tasks.repeat_copy import RepeatCopyTask
from ntm.tasks.task import Difficulty, Encoded, Task

TASKS: dict[str, type[Task]] = {
    CopyTask.name: CopyTask,
    RepeatCopyTask.name: RepeatCopyTask,
    RecallTask.name: RecallTask,
}


def get_task(name: str, **kwargs: Any) -> Task:
    """The task called ``name`` ("copy", "repeat-copy", "recall")."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)


def task_from_metadata(meta: dict[str, Any]) -> Task:
    """Rebuild a task from ``Task.metadata()``; ValueError names what is missing or wrong."""
    try:
        cls = TASKS[meta["task"]]
    except KeyError:
        raise ValueError(f"metadata names no known task (got {meta.get('task')!r}; "
                         f"known: {sorted(TASKS)})") from None
    kwargs = dict(meta.get("parameters", {}))
    kwargs["train_lengths"] = tuple(meta["train_lengths"])
    if meta.get("train_repeats"):
        kwargs["train_repeats"] = tuple(meta["train_repeats"])
    task = cls(**kwargs)
    if (task.input_size, task.output_size) != (meta["input_size"], meta["output_size"]):
        raise ValueError(f"metadata widths {meta['input_size']}/{meta['output_size']} do not "
                         f"match task {task.name} ({task.input_size}/{task.output_size})")
    return task


__all__ = ["Batch", "CopyTask", "Difficulty", "Encoded", "InvalidRequest", "RecallTask",
           "RepeatCopyTask", "TASKS", "Task", "bit_errors", "get_task", "task_from_metadata"]
