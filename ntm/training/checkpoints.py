"""Saving and restoring training state with ``tf.train.CheckpointManager``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from ntm.model.architectures import SequenceModel, build_model
from ntm.model.config import ModelConfig
from ntm.training.layout import CHECKPOINT_DIR, RunError


class TrainingState(tf.Module):
    """Counters that must survive a restart, saved in every checkpoint beside the weights."""

    def __init__(self):
        super().__init__(name="training_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.sequences = tf.Variable(0, dtype=tf.int64, trainable=False, name="sequences")
        self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed")
        self.stage = tf.Variable(1, dtype=tf.int64, trainable=False, name="stage")
        self.good_evals = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_evals")
        self.last_eval = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="last_eval")


class RestartState(tf.Module):
    """How often a run was re-initialised (``TrainConfig.restart_at``) and at which step last.
    Only runs with restarts switched on carry it, so older checkpoints restore unchanged."""

    def __init__(self):
        super().__init__(name="restart_state")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name="count")
        self.since = tf.Variable(0, dtype=tf.int64, trainable=False, name="since")


class PolishState(tf.Module):
    """The polish phase (``TrainConfig.polish_steps``): the step it began at (-1: not yet) and
    the weight of the write-entropy term the training step reads (0 until it begins). Only runs
    that polish carry it, so older checkpoints restore unchanged."""

    def __init__(self):
        super().__init__(name="polish_state")
        self.since = tf.Variable(-1, dtype=tf.int64, trainable=False, name="since")
        self.entropy_weight = tf.Variable(0.0, trainable=False, name="entropy_weight")


def make_checkpoint(model: SequenceModel, optimizer, state: TrainingState,
                    restarts: RestartState | None = None,
                    polish: PolishState | None = None) -> tf.train.Checkpoint:
    extra = {} if restarts is None else {"restarts": restarts}
    if polish is not None:
        extra["polish"] = polish
    return tf.train.Checkpoint(model=model, optimizer=optimizer, state=state, **extra)


def all_finite(variables) -> bool:
    """True when every value of every variable is finite."""
    return all(bool(np.isfinite(v.numpy()).all()) for v in variables)


def restore_checkpoint(run_dir: Path, model_config: ModelConfig, seed: int,
                       step: int | None = None) -> tuple[SequenceModel, TrainingState]:
    """The model of ``model_config`` (the network its ``architecture`` names) and the training
    counters, restored from the latest checkpoint in ``run_dir``, or from the one of ``step``
    (``Run.model`` calls this; open runs through ``Run``).

    Raises RunError with a one-line message when no checkpoint is readable, or when the run
    keeps none of ``step`` (the message lists the steps it keeps).
    """
    model = build_model(model_config, seed=seed)
    state = TrainingState()
    ckpt = tf.train.Checkpoint(model=model, state=state)
    path = (tf.train.latest_checkpoint(str(Path(run_dir) / CHECKPOINT_DIR)) if step is None
            else checkpoint_of_step(run_dir, step))
    if path is None:
        raise RunError(f"{run_dir} has no readable checkpoint")
    try:
        ckpt.restore(path).expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"checkpoint {path} could not be restored: {first}") from None
    return model, state


def checkpoint_step(path: str) -> int:
    """The step a checkpoint prefix (``.../ckpt-STEP``, saved with ``checkpoint_number``) holds."""
    return int(path.rsplit("-", 1)[1])


def kept_checkpoints(run_dir: Path) -> dict[int, str]:
    """{step: checkpoint prefix} of every checkpoint the run keeps, oldest first."""
    state = tf.train.get_checkpoint_state(str(Path(run_dir) / CHECKPOINT_DIR))
    paths = list(state.all_model_checkpoint_paths) if state else []
    return dict(sorted((checkpoint_step(p), p) for p in paths))


def checkpoint_of_step(run_dir: Path, step: int) -> str:
    """The prefix of the checkpoint of ``step``; RunError naming the steps kept otherwise."""
    kept = kept_checkpoints(run_dir)
    if step not in kept:
        listed = ", ".join(map(str, kept)) or "none"
        raise RunError(f"{run_dir} keeps no checkpoint of step {step} (kept: {listed})")
    return kept[step]
