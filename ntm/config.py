"""Typed configuration: one frozen dataclass per concern, saved beside every checkpoint and export.

``ModelConfig`` fixes the architecture (paper §3, defaults from the paper's Tables 1-3);
``TrainConfig`` fixes the optimiser, data and schedule. Both round-trip through plain dicts
(JSON); an unknown key fails loudly and lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it."""


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(names)}"
        )
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the NTM (paper §3).

    The defaults are the paper's LSTM-NTM: memory 128 x 20, one LSTM layer of 100 units,
    one read head and one write head, shifts -1..+1.
    """

    input_size: int = 9  # width of an input vector (task-specific)
    output_size: int = 8  # width of an output vector (task-specific)
    memory_size: int = 128  # number of memory rows (N in the paper)
    memory_width: int = 20  # width of a memory row (M in the paper)
    controller: str = "lstm"  # "lstm" or "feedforward"
    controller_size: int = 100  # controller units
    num_read_heads: int = 1
    num_write_heads: int = 1
    shift_range: int = 1  # allowed shifts -shift_range..+shift_range
    clip_value: float = 20.0  # controller outputs (head parameters, logits) clipped to +-clip_value
    memory_init: float = 1e-6  # constant initial memory (Collier & Beel 2018)
    # Running with more rows than memory_size (ntm.cell; both measured, see README):
    grow_logit_margin: float = 30.0  # added rows' initial logits: each head's minimum minus this
    grow_strength_power: float = 2.0  # key strength x (log N / log memory_size) ** this

    def __post_init__(self) -> None:
        positive = {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "memory_size": self.memory_size,
            "memory_width": self.memory_width,
            "controller_size": self.controller_size,
            "num_read_heads": self.num_read_heads,
            "num_write_heads": self.num_write_heads,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.controller not in ("lstm", "feedforward"):
            raise ConfigError(
                f"controller must be 'lstm' or 'feedforward', got {self.controller!r}"
            )
        if not isinstance(self.shift_range, int) or self.shift_range < 0:
            raise ConfigError(f"shift_range must be an integer >= 0, got {self.shift_range!r}")
        if 2 * self.shift_range + 1 > self.memory_size:
            raise ConfigError(
                f"shift_range {self.shift_range} needs memory_size >= {2 * self.shift_range + 1}, "
                f"got {self.memory_size}"
            )
        if not self.clip_value > 0:
            raise ConfigError(f"clip_value must be > 0, got {self.clip_value!r}")
        if not self.memory_init >= 0:
            raise ConfigError(f"memory_init must be >= 0, got {self.memory_init!r}")
        for name in ("grow_logit_margin", "grow_strength_power"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @property
    def num_heads(self) -> int:
        return self.num_read_heads + self.num_write_heads

    @property
    def num_shifts(self) -> int:
        return 2 * self.shift_range + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data)


STRATEGIES = ("default", "mirrored", "multi-worker")  # tf.distribute strategies (ntm.distribute)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, data and schedule of one training run.

    Defaults chosen by measured time to < 0.1 bits/seq on copy (see README, "Choosing the
    defaults"): RMSProp (the paper's optimiser) at batch 4 and lr 2e-4 converged in about two
    minutes on this 2-core CPU; Adam 1e-3 at batch 16, and a length curriculum, were slower.
    """

    task: str = "copy"
    min_length: int | None = None  # training length range; None = the task's default
    max_length: int | None = None
    min_repeats: int | None = None  # repeat-copy only
    max_repeats: int | None = None
    batch_size: int = 4
    optimizer: str = "rmsprop"  # "adam" or "rmsprop"
    learning_rate: float = 2e-4
    momentum: float = 0.9  # RMSProp momentum
    lr_decay: float = 1.0  # multiply the learning rate by this every lr_decay_every steps
    lr_decay_every: int = 10000
    grad_clip_norm: float = 50.0  # global-norm gradient clipping (Collier & Beel)
    grad_clip_value: float = 10.0  # per-component clipping (paper)
    steps: int = 20000
    curriculum_stages: int = 1  # lengthen sequences in this many stages (1 = no curriculum)
    curriculum_threshold: float = 0.5  # advance when bits/seq at the stage's longest is below
    seed: int = 0
    eval_every: int = 250
    eval_size: int = 128
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # how many recent checkpoints to keep
    log_every: int = 50
    target_error: float = 0.01  # stop when held-out bits/seq <= this (negative: never stop early)
    patience_evals: int = 3  # ... for this many consecutive evaluations on the full range
    strategy: str = "default"  # one of STRATEGIES; batch_size stays the global batch

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "rmsprop"):
            raise ConfigError(f"optimizer must be 'adam' or 'rmsprop', got {self.optimizer!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, "
                              f"got {self.strategy!r}")
        for name in ("batch_size", "steps", "eval_every", "eval_size", "checkpoint_every",
                     "log_every", "patience_evals", "curriculum_stages", "lr_decay_every", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        for name in ("grad_clip_norm", "grad_clip_value"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def learning_rate_at(self, step: int) -> float:
        """The step schedule: learning_rate * lr_decay ** (step // lr_decay_every)."""
        return self.learning_rate * self.lr_decay ** (step // self.lr_decay_every)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)


CONFIG_FILE = "config.json"


def save_configs(directory: Path, model: ModelConfig, train: TrainConfig) -> Path:
    """Write ``config.json`` (model + train) atomically into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CONFIG_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"model": model.to_dict(), "train": train.to_dict()}, indent=2))
    tmp.replace(path)
    return path


def load_configs(directory: Path) -> tuple[ModelConfig, TrainConfig]:
    """Read ``config.json`` from a run directory; a clear ConfigError when it is missing or bad."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {directory}: not a training run directory")
    try:
        data = json.loads(path.read_text())
        return ModelConfig.from_dict(data["model"]), TrainConfig.from_dict(data["train"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is corrupt: {err}") from None
