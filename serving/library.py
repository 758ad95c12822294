"""The Python library: a model in process, on onnxruntime alone.

    import ntm

    with ntm.load("copy") as model:
        [answer] = model.predict([{"sequence": [[0, 1, 1, 0, 1, 0, 0, 1]]}])

``load`` takes what ``ntm predict --model`` takes (a bundled model's name, the name of your
export under ``exports/``, or a path) and the ``RuntimeOptions`` as keywords. ``predict``
takes the requests the HTTP task API takes and answers them the way ``ntm predict`` and
``ntm serve`` do: through the data plane (``ntm.serving.plane``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from ntm.contract.tasks import Task
from ntm.serving.errors import ServingError
from ntm.serving.models import resolve
from ntm.serving.plane import predict_tasks
from ntm.serving.requests import parse_instances
from ntm.serving.runtime import ModelRuntime
from ntm.serving.settings import RuntimeOptions

OPTIONS = tuple(f.name for f in dataclasses.fields(RuntimeOptions))


class Model:
    """An exported model loaded in this process (see ``load``).

    Attributes:
        name: its name (the task's, unless ``load`` was given one).
        task: its task (``ntm.contract.tasks.Task``): request fields, rendering, ranges.
        path: the ``.onnx`` file.
        runtime: the ``ModelRuntime`` underneath, for arrays (``runtime.run``).
    """

    def __init__(self, runtime: ModelRuntime):
        self.runtime = runtime
        self.closed = False

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def task(self) -> Task:
        return self.runtime.task

    @property
    def path(self) -> Path:
        return self.runtime.path

    def predict(self, requests: Any) -> list[dict[str, Any]]:
        """Answer task requests: a list of them, one request, or ``{"instances": [...]}``.

        Each answer holds the task's fields (copy: ``output``; recall: ``item``),
        ``within_training_range`` and ``memory_size`` (a model without memory, the LSTM
        baseline, has none; nor attention). A bad request raises
        ``ntm.serving.ServingError`` (an ``NtmError``) naming its field.
        """
        if self.closed:
            raise ServingError(f"model {self.name} is closed")
        return predict_tasks(self.runtime, parse_instances(requests, sys.maxsize))

    def describe(self) -> dict[str, Any]:
        """Name, task, mode, limits and training figures (as ``GET /v1/models`` lists)."""
        return self.runtime.describe()

    def close(self) -> None:
        """Release the onnxruntime sessions; the model answers nothing after this."""
        self.closed = True
        self.runtime.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ntm model {self.name!r} ({self.task.name}) from {self.path}>"


def load(model: str | os.PathLike, name: str | None = None, **options: Any) -> Model:
    """Load a model: a bundled model's name ("copy", "repeat-copy", "recall"), the name of your
    export under ``exports/`` (preferred over the bundled one), or a path to an ``.onnx`` file.

    ``options`` are ``RuntimeOptions`` fields: intra_op_threads, inter_op_threads,
    graph_optimization, max_time_steps, memory_size, max_memory_size. Raises
    ``ntm.serving.ServingError`` (an ``NtmError``) when the model cannot be found or loaded.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"load(): unknown option {unknown[0]!r}; options: {', '.join(OPTIONS)}")
    return Model(ModelRuntime(resolve(str(model)), name=name, options=RuntimeOptions(**options)))
