"""``TrainConfig``: the optimiser, data and schedule of a run, a frozen dataclass saved beside
every checkpoint (with the ``ModelConfig``, in ``config.json``); ``ntm train`` generates its
options from the fields' metadata (``ntm.contract.fields``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ntm.contract.fields import (POSITIVE, ConfigError, ConfigFileError, check_fields,
                                 from_dict, setting)
from ntm.contract.tasks import Task, get_task
from ntm.files import write_json_atomic
from ntm.model.config import ModelConfig

# TrainConfig fields whose None means "the task's own default" (Task.train_defaults).
TASK_DEFAULTS = ("restart_at", "write_entropy", "memory_noise", "blank_runs", "polish_steps")

# tf.distribute strategies (ntm.training.distribute)
STRATEGIES = ("default", "mirrored", "multi-worker")

# TrainConfig fields that act on the NTM's write heads, memory or controller: a model without
# memory (the LSTM baseline) has nothing to take them (``Run`` refuses them for it).
MEMORY_SETTINGS = ("write_entropy", "memory_noise", "controller_noise")
# A new LSTM baseline run's values for the task defaults that belong to the NTM: copy's polish
# (entropy, memory noise, blank runs) is aimed at the NTM's failures far past its training
# length, and the paper's baseline learns the plain task (``train_config_for``).
BASELINE_DEFAULTS = {"write_entropy": 0.0, "memory_noise": 0.0, "blank_runs": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, data and schedule of one training run.

    Defaults chosen by measured time to < 0.1 bits/seq on copy (docs/training.md, "Choosing the
    defaults"): RMSProp (the paper's optimiser) at batch 4 and lr 2e-4 converged in about two
    minutes on this 2-core CPU; Adam 1e-3 at batch 16, and a length curriculum, were slower.
    """

    # The task is checked against the task registry (ntm.contract.tasks) when it is built.
    task: str = setting("copy", "Which task to learn.", cli=False)
    # Training length range; None = the task's default.
    min_length: int | None = setting(
        None, "Shortest training sequence (recall: fewest items) [default: the task's].",
        **POSITIVE)
    max_length: int | None = setting(
        None, "Longest training sequence (recall: most items) [default: the task's].",
        **POSITIVE)
    min_repeats: int | None = setting(None, "repeat-copy: fewest repeats.", **POSITIVE)
    max_repeats: int | None = setting(None, "repeat-copy: most repeats.", **POSITIVE)
    batch_size: int = setting(
        4, "Sequences per step (the global batch: split over the replicas).", **POSITIVE)
    optimizer: str = setting("rmsprop", "Optimiser.", choices=("adam", "rmsprop"))
    # The schedule may change on --resume (fine-tuning a run, e.g. polishing it).
    learning_rate: float = setting(2e-4, "Learning rate.", flags=("--learning-rate", "--lr"),
                                   low=0, low_open=True, resumable=True)
    momentum: float = setting(0.9, "RMSProp momentum.", low=0, high=1, high_open=True)
    lr_decay: float = setting(
        1.0, "Multiply the learning rate by this every --lr-decay-every steps (1 = constant).",
        low=0, high=1, low_open=True, resumable=True)
    lr_decay_every: int = setting(10000, "Steps between learning-rate decays.", resumable=True,
                                  **POSITIVE)
    # Global-norm clipping (Collier & Beel), then per-component clipping (paper).
    grad_clip_norm: float = setting(50.0, "Global gradient-norm clip.", low=0, low_open=True)
    grad_clip_value: float = setting(10.0, "Per-component gradient clip.", low=0, low_open=True)
    write_entropy: float | None = setting(
        None, "Add this times the write heads' attention entropy (nats, summed over time steps) "
              "to the loss: writes spread over many rows cost (0 = off) [default: the task's: "
              "copy 0.01, measured by benchmarks/seeds.py; the others 0].", low=0,
        resumable=True)
    memory_noise: float | None = setting(
        None, "Start every training sequence's memory with Gaussian noise added, its standard "
              "deviation drawn per sequence from [0, this]: reading rows the sequence never "
              "wrote is then no longer free, and a read head that wanders over them during "
              "the input (to meet a longer input's writes later) costs (0 = off) [default: the "
              "task's: copy 0.5, measured by benchmarks/seeds.py; the others 0].", low=0,
        resumable=True)
    controller_noise: float = setting(
        0.0, "Add Gaussian noise to the LSTM controller's cell state after every step, its "
             "standard deviation drawn per sequence from [0, this]: what the controller holds "
             "in its own state alone blurs as the input goes on, as it would over a longer "
             "input, so relying on it (rather than on memory) costs; on and off with "
             "--memory-noise's schedule (0 = off).", low=0, resumable=True)
    blank_runs: float | None = setting(
        None, "Blank a run of 2-5 consecutive items (every bit 0) in this fraction of the "
              "training sequences, on and off with --memory-noise's schedule: random items "
              "almost never give two blank ones in a row, which is what the output phase feeds "
              "in, so a model may take such a run for the end of its input (copy only; "
              "0 = off) [default: the task's: copy 0.3, measured by benchmarks/seeds.py; the "
              "others 0].", low=0, high=1, resumable=True)
    noise_after: int | None = setting(
        None, "With --memory-noise, --controller-noise or --blank-runs and --polish-steps: "
              "polish this many steps without them before they join in [default: half the "
              "polish steps the run was created with; a resumed run keeps it unless given].",
        low=0, resumable=True)
    polish_steps: int | None = setting(
        None, "With --write-entropy or a noise: leave them off until held-out bits/seq "
              "first reaches --target-error, then train this many more steps with them on "
              "before stopping at the target (0: they are on from the start) [default: the "
              "task's: copy 6000; the others 0].", low=0, resumable=True)
    steps: int = setting(20000, "Total training steps (a resumed run may raise it).",
                         resumable=True, **POSITIVE)
    curriculum_stages: int = setting(
        1, "Lengthen sequences in this many stages (1 = off).", **POSITIVE)
    curriculum_threshold: float = setting(
        0.5, "Advance a stage below this bits/seq at its longest sequences.", low=0)
    seed: int = setting(0, "Seed for weights and data.")
    restart_at: int | None = setting(
        None, "Re-initialise the weights (a new seed, the optimiser reset) when held-out bits/seq "
              "is still above --restart-above this many steps after the start or the last "
              "restart; the steps, data and clock go on (0 = never) [default: the task's: "
              "recall 8000, measured by benchmarks/seeds.py; the others 0].", low=0)
    restart_above: float = setting(
        1.0, "Held-out bits/seq above which --restart-at re-initialises.", low=0)
    eval_every: int = setting(250, "Steps between held-out evaluations.", resumable=True,
                              **POSITIVE)
    eval_size: int = setting(128, "Sequences in the fixed held-out set.", **POSITIVE)
    checkpoint_every: int = setting(1000, "Steps between checkpoints.", resumable=True,
                                    **POSITIVE)
    keep_checkpoints: int = setting(3, "Recent checkpoints kept on disk.", resumable=True,
                                    **POSITIVE)
    log_every: int = setting(50, "Steps between metric lines.", resumable=True, **POSITIVE)
    target_error: float = setting(
        0.01, "Stop when held-out bits/seq is at most this (negative: never).", resumable=True)
    patience_evals: int = setting(
        3, "Consecutive evaluations at the target before stopping.", flags=("--patience",),
        resumable=True, **POSITIVE)
    # A checkpoint restores under any strategy: the global batch is the same.
    strategy: str = setting(
        "default", "tf.distribute strategy: one device; mirrored over --cpu-devices logical "
                   "CPUs; or multi-worker, one process per worker, each with its TF_CONFIG. "
                   "--batch-size stays the global batch, split evenly over the replicas.",
        choices=STRATEGIES, resumable=True)

    def __post_init__(self) -> None:
        check_fields(self)
        unset = [name for name in TASK_DEFAULTS if getattr(self, name) is None]
        if unset:  # None: the task's own default (Task.train_defaults)
            try:  # looked up once: each lookup reads the installed plug-ins' entry points
                defaults = get_task(self.task).train_defaults
            except ValueError:  # an unknown task: build_task names it
                defaults = {}
            for name in unset:
                object.__setattr__(self, name, defaults.get(name, 0))
        if self.noise_after is None:
            object.__setattr__(self, "noise_after", self.polish_steps // 2)
        self.check_noise_after()

    def check_noise_after(self) -> None:
        """ConfigError unless polishing leaves the noise some steps (``noise_after`` below
        ``polish_steps``)."""
        if self.noisy and self.polishes and self.noise_after >= self.polish_steps:
            raise ConfigError(f"noise_after ({self.noise_after}) must be below polish_steps "
                              f"({self.polish_steps}): the noise would never be on (a resumed "
                              f"run keeps the noise_after it was created with unless "
                              f"--noise-after is given)", "noise_after")

    @property
    def noisy(self) -> bool:
        """True when the run trains with memory or controller noise or blank runs (at some
        point: they share one schedule)."""
        return bool(self.memory_noise or self.controller_noise or self.blank_runs)

    @property
    def polishes(self) -> bool:
        """True when the entropy term and the noise wait for the target (``polish_steps``)."""
        return bool(self.write_entropy or self.noisy) and self.polish_steps > 0

    def learning_rate_at(self, step: int) -> float:
        """The step schedule: learning_rate * lr_decay ** (step // lr_decay_every)."""
        return self.learning_rate * self.lr_decay ** (step // self.lr_decay_every)

    def build_task(self) -> Task:
        """The task, with this config's length (and repeat) ranges; ConfigError names an
        unknown task, an impossible range, or a repeat range for a task without repeats."""
        try:
            task = get_task(self.task)
        except ValueError as err:
            raise ConfigError(str(err), "task") from None
        lengths = repeats = None
        if self.min_length is not None or self.max_length is not None:
            lo, hi = task.train_lengths
            lengths = (lo if self.min_length is None else self.min_length,
                       hi if self.max_length is None else self.max_length)
        if self.min_repeats is not None or self.max_repeats is not None:
            if task.train_repeats is None:
                raise ConfigError(f"{task.name} has no repeats: min_repeats/max_repeats are not "
                                  f"options for it", "min_repeats")
            lo, hi = task.train_repeats
            repeats = (lo if self.min_repeats is None else self.min_repeats,
                       hi if self.max_repeats is None else self.max_repeats)
        try:
            return task.with_training_ranges(lengths, repeats)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        # A run written before restarts existed never restarts (its checkpoints have no
        # restart counters to restore).
        # A config.json written before a setting existed ran without it.
        return from_dict(cls, {**{name: 0 for name in TASK_DEFAULTS}, **data})


def train_config_for(architecture: str, **options: Any) -> "TrainConfig":
    """The TrainConfig of ``options`` for a run of ``architecture`` (``ModelConfig``): for a
    network other than the NTM, the ``BASELINE_DEFAULTS`` settings ``options`` leave to the
    task (absent or None) are the baseline's instead; given ones stay (``Run`` refuses those
    the network cannot take)."""
    if architecture != "ntm":
        options = {**options, **{name: value for name, value in BASELINE_DEFAULTS.items()
                                 if options.get(name) is None}}
    return TrainConfig(**options)


def resumable_fields() -> set[str]:
    """What a resumed run may change: schedule, reporting and placement, never the model or
    the data."""
    return {f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"]}


CONFIG_FILE = "config.json"


def save_configs(directory: Path, model: ModelConfig, train: TrainConfig) -> Path:
    """Write ``config.json`` (model + train) atomically into ``directory``."""
    path = Path(directory) / CONFIG_FILE
    write_json_atomic(path, {"model": model.to_dict(), "train": train.to_dict()})
    return path


def load_configs(directory: Path) -> tuple[ModelConfig, TrainConfig]:
    """Read ``config.json`` from a run directory; a ConfigFileError when it is missing or bad."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ConfigFileError(f"no {CONFIG_FILE} in {directory}: not a training run directory")
    try:
        data = json.loads(path.read_text())
        return ModelConfig.from_dict(data["model"]), TrainConfig.from_dict(data["train"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigFileError(f"{path} is corrupt: {err}") from None
    except ConfigError as err:
        raise ConfigFileError(f"{path}: {err}") from None
