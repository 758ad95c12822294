"""Training runs: ``Run``, the one way into a run directory (no TensorFlow until a model is
asked for; what the directory holds: ``ntm.training.layout``).

``Run.create`` configures a new run, ``Run.load`` opens a trained one; both build the run's task
once. ``ntm train``, ``ntm evaluate``, ``ntm export``, ``ntm plot`` and the bundler all go
through them (``ntm.training.run_writer`` writes the files while training).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ntm.contract.fields import ConfigError, ConfigFileError
from ntm.model.config import ModelConfig
from ntm.training.config import (CONFIG_FILE, MEMORY_SETTINGS, TrainConfig, load_configs,
                                 resumable_fields)
from ntm.contract.tasks import Difficulty, Task
from ntm.training.layout import CHECKPOINT_DIR, RUNS_ROOT, SUMMARY_FILE, RunError

if TYPE_CHECKING:
    import numpy as np

    from ntm.training.evaluation import EvalRow

def check_memory_settings(model_config: ModelConfig, train_config: TrainConfig) -> None:
    """ConfigError when a model without memory (the LSTM baseline) is asked for a training
    setting only the NTM's write heads, memory or controller take (``MEMORY_SETTINGS``)."""
    if model_config.has_memory:
        return
    for name in MEMORY_SETTINGS:
        value = getattr(train_config, name)
        if value:
            raise ConfigError(f"{name} {value:g}: the LSTM baseline has no write heads, memory "
                              f"or NTM controller to take it (it must be 0 for architecture "
                              f"{model_config.architecture!r})", name)


def check_controller_noise(model_config: ModelConfig, train_config: TrainConfig) -> None:
    """ConfigError when controller noise is asked of a controller without a state to add it to
    (the feedforward one)."""
    if train_config.controller_noise and model_config.controller != "lstm":
        raise ConfigError(f"controller_noise needs the lstm controller (the {model_config.controller}"
                          f" controller keeps no state to add it to)", "controller_noise")


def check_blank_runs(task: Task, train_config: TrainConfig) -> None:
    """ConfigError when blank runs are asked of a task that cannot blank its items."""
    if train_config.blank_runs and not task.blanks_items:
        raise ConfigError(f"blank_runs: the {task.name} task cannot blank runs of its items "
                          f"(copy can)", "blank_runs")


def default_run_dir(task: str) -> Path:
    return RUNS_ROOT / task


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_DIR / "checkpoint").is_file()


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The run under ``root`` whose checkpoint was written last."""
    candidates = [p.parent.parent for p in Path(root).glob(f"*/{CHECKPOINT_DIR}/checkpoint")]
    if not candidates:
        raise RunError(f"no training run with a checkpoint under {root}/; "
                       f"train one first with: ntm train --task copy")
    return max(candidates, key=lambda p: (p / CHECKPOINT_DIR / "checkpoint").stat().st_mtime)


def check_run_dir(run_dir: Path) -> Path:
    """Raise RunError unless ``run_dir`` holds a config and a checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} has no {CONFIG_FILE}: not a training run directory")
    if not has_checkpoint(run_dir):
        raise RunError(f"{run_dir} has no checkpoint (expected {run_dir / CHECKPOINT_DIR}/)")
    return run_dir


def read_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


@dataclass(frozen=True)
class Run:
    """One training run: its directory, configs and task; its model on demand.

    ``model`` and ``state`` (``checkpoints.TrainingState``) restore the latest checkpoint
    the first time they are read (that imports TensorFlow); ``probabilities`` and ``evaluate``
    run that model.
    """

    directory: Path
    model_config: ModelConfig
    train_config: TrainConfig
    task: Task
    checkpoint: int | None = None  # the step whose checkpoint the model is; None: the latest

    @classmethod
    def create(cls, directory: Path, train_config: TrainConfig, **model_options: Any) -> "Run":
        """A new run of ``train_config``'s task (nothing is written until training starts).

        ``model_options`` are ModelConfig fields other than input_size and output_size, which
        the task fixes; for the NTM, the task's ``model_defaults`` fill the fields they leave
        out. ConfigError when a value is impossible, when the memory cannot hold
        the task's longest training sequence, or when a model without memory is asked for a
        setting of the NTM's (``check_memory_settings``; ``config.train_config_for`` makes a
        TrainConfig without them).
        """
        task = train_config.build_task()
        is_ntm = model_options.get("architecture", ModelConfig.architecture) == "ntm"
        options = {**(task.model_defaults if is_ntm else {}), **model_options}
        model_config = ModelConfig(input_size=task.input_size, output_size=task.output_size,
                                   **options)
        needed = task.memory_rows(task.hardest_training_difficulty)
        if model_config.has_memory and model_config.memory_size < needed:
            raise ConfigError(
                f"memory_size {model_config.memory_size} is too small for {task.name} at "
                f"{task.training_range()}: its longest training sequence needs {needed} memory "
                f"rows", "memory_size")
        check_memory_settings(model_config, train_config)
        check_controller_noise(model_config, train_config)
        check_blank_runs(task, train_config)
        return cls(Path(directory), model_config, train_config, task)

    @classmethod
    def load(cls, directory: Path | None = None, checkpoint: int | None = None) -> "Run":
        """The trained run in ``directory`` [default: the latest under runs/], its model the
        checkpoint of step ``checkpoint`` [default: the latest]; RunError or ConfigFileError
        for a missing or corrupt one (a step it does not keep: when the model is first used)."""
        directory = check_run_dir(latest_run() if directory is None else directory)
        model_config, train_config = load_configs(directory)
        try:
            task = train_config.build_task()
        except ConfigError as err:
            raise ConfigFileError(f"{directory / CONFIG_FILE}: {err}") from None
        return cls(directory, model_config, train_config, task, checkpoint)

    def resumed(self, changes: dict[str, Any]) -> "Run":
        """This run with ``changes`` ({field: value} of either config) applied; a ConfigError
        names a change a resumed run may not make (only schedule, reporting and placement may
        change, never the model or the data)."""
        allowed = resumable_fields()
        for name, value in changes.items():
            saved = getattr(self.train_config, name, getattr(self.model_config, name, None))
            if value != saved and name not in allowed:
                raise ConfigError(
                    f"{name} {value} differs from the run's saved {name}={saved!r}; a resumed "
                    f"run keeps its model and data settings (changeable: "
                    f"{', '.join(sorted(allowed))})", name)
        train_config = dataclasses.replace(
            self.train_config, **{k: v for k, v in changes.items() if k in allowed})
        check_memory_settings(self.model_config, train_config)
        check_controller_noise(self.model_config, train_config)
        check_blank_runs(self.task, train_config)
        return dataclasses.replace(self, train_config=train_config)

    # -- the trained model (TensorFlow) ----------------------------------------------------
    @cached_property
    def _restored(self) -> tuple:
        from ntm.training.checkpoints import restore_checkpoint  # TensorFlow: when asked for

        return restore_checkpoint(self.directory, self.model_config, self.train_config.seed,
                                  self.checkpoint)

    @property
    def model(self):
        """The network (``ntm.model.architectures.build_model``: the NTM or the LSTM baseline)
        with the weights of the latest checkpoint (or of ``checkpoint``'s step)."""
        return self._restored[0]

    @property
    def state(self):
        """That checkpoint's counters (``ntm.training.checkpoints.TrainingState``)."""
        return self._restored[1]

    @cached_property
    def probabilities(self) -> Callable[..., "np.ndarray"]:
        """probabilities(inputs [batch, time, in], rows) -> [batch, time, out], NumPy in and
        out, with ``rows`` memory rows (one compiled graph for every length and size); for a
        model without memory (the LSTM baseline) probabilities(inputs)."""
        from ntm.training.steps import make_predict, make_predict_with_rows

        if self.model_config.has_memory:
            return make_predict_with_rows(self.model)
        predict = make_predict(self.model)
        return lambda inputs: predict(inputs).numpy()

    def evaluate(self, points: Sequence[Difficulty], sequences: int, batch_size: int = 50,
                 seed: int = 1234, memory_size: int | None = None) -> list["EvalRow"]:
        """Bits/seq at ``points`` on fresh sequences, each point with the memory rows
        ``evaluation.rows_for_points`` gives it (``memory_size``: every point with that); a
        model without memory has no rows to give (ConfigError when ``memory_size`` is)."""
        from ntm.training.evaluation import evaluate, rows_for_points

        if not self.model_config.has_memory:
            if memory_size is not None:
                raise ConfigError(f"memory_size {memory_size}: the LSTM baseline has no memory "
                                  f"(architecture {self.model_config.architecture!r})",
                                  "memory_size")
            return evaluate(self.probabilities, self.task, points, sequences, batch_size, seed)
        return evaluate(self.probabilities, self.task, points, sequences, batch_size, seed,
                        rows_for=rows_for_points(self.task, self.model_config.memory_size,
                                                 memory_size))
