"""Where tasks come from: the five built in, and any other package's, found through the
``ntm.tasks`` entry-point group.

A package adds a task by subclassing ``ntm.contract.tasks.Task`` and declaring it::

    [project.entry-points."ntm.tasks"]
    invert = "my_package.invert:InvertTask"

The entry point's name must equal the class's ``name``. Once installed, ``ntm train --task
invert``, ``ntm evaluate``, ``ntm export``, ``ntm predict`` and ``ntm serve`` all take it.
A plug-in that fails to load, or names a built-in task, is skipped with a warning naming it.
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points
from typing import Any

from ntm.contract.tasks.copy import CopyTask
from ntm.contract.tasks.ngrams import NGramsTask
from ntm.contract.tasks.priority_sort import PrioritySortTask
from ntm.contract.tasks.recall import RecallTask
from ntm.contract.tasks.repeat_copy import RepeatCopyTask
from ntm.contract.tasks.task import Task

ENTRY_POINT_GROUP = "ntm.tasks"
BUILT_IN: tuple[type[Task], ...] = (CopyTask, RepeatCopyTask, RecallTask, NGramsTask,
                                     PrioritySortTask)


def _plugged_in() -> dict[str, type[Task]]:
    found: dict[str, type[Task]] = {}
    builtin = {cls.name for cls in BUILT_IN}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"task plug-in {point.name!r} ({point.value})"
        try:
            cls = point.load()
        except Exception as err:  # a broken plug-in must not break the built-in tasks
            warnings.warn(f"{where} failed to load and is skipped: {err}", stacklevel=3)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            warnings.warn(f"{where} is not a subclass of ntm.contract.tasks.Task; skipped",
                          stacklevel=3)
        elif getattr(cls, "name", None) != point.name:
            warnings.warn(f"{where}: the class's name is {getattr(cls, 'name', None)!r}, not "
                          f"{point.name!r}; skipped", stacklevel=3)
        elif point.name in builtin:
            warnings.warn(f"{where} names a built-in task; skipped", stacklevel=3)
        else:
            found[point.name] = cls
    return found


def task_classes() -> dict[str, type[Task]]:
    """{name: Task subclass}: the built-in tasks, then the plugged-in ones (read anew on each
    call, so a plug-in installed while a process runs is seen by its next call)."""
    return {**{cls.name: cls for cls in BUILT_IN}, **_plugged_in()}


def task_names() -> list[str]:
    return sorted(task_classes())


def get_task(name: str, **kwargs: Any) -> Task:
    """The task called ``name`` with its default ranges (or ``kwargs``); ValueError lists the
    known tasks."""
    classes = task_classes()
    if name not in classes:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(classes)}")
    return classes[name](**kwargs)


def task_from_metadata(meta: dict[str, Any]) -> Task:
    """Rebuild a task from ``Task.metadata()``; ValueError names what is missing or wrong."""
    classes = task_classes()
    if meta.get("task") not in classes:
        raise ValueError(f"metadata names no known task (got {meta.get('task')!r}; "
                         f"known: {sorted(classes)}; a plug-in task must be installed)")
    kwargs = dict(meta.get("parameters", {}))
    kwargs["train_lengths"] = tuple(meta["train_lengths"])
    if meta.get("train_repeats"):
        kwargs["train_repeats"] = tuple(meta["train_repeats"])
    task = classes[meta["task"]](**kwargs)
    if (task.input_size, task.output_size) != (meta["input_size"], meta["output_size"]):
        raise ValueError(f"metadata widths {meta['input_size']}/{meta['output_size']} do not "
                         f"match task {task.name} ({task.input_size}/{task.output_size})")
    return task


def guess_task(request: Any) -> str | None:
    """The task a request is for, from its fields (``ntm predict`` without ``--model``): the
    task whose ``request_keys`` are all in the request, the most of them; None when none is.

    On a tie a built-in task wins (installing a plug-in never changes where a built-in task's
    requests go), and a tie between plug-ins alone is ambiguous: None."""
    if isinstance(request, list) and request:
        request = request[0]
    if isinstance(request, dict) and isinstance(request.get("instances"), list) \
            and request["instances"]:
        request = request["instances"][0]
    if not isinstance(request, dict):
        return None
    fits = [(len(cls.request_keys), cls in BUILT_IN, name)
            for name, cls in task_classes().items()
            if cls.request_keys and set(cls.request_keys) <= set(request)]
    if not fits:
        return None
    best = max(fits)
    if not best[1] and sum(1 for fit in fits if fit[0] == best[0]) > 1:
        return None
    return best[2]
