"""The training loop behind ``ntm train``.

Everything a run needs to continue exactly lives in its directory: the config, checkpoints with
the weights, optimiser slots, step, sequences seen, wall time and curriculum stage. The data for
step s is drawn from ``default_rng([seed, 0, s])``, so a resumed run sees the same batches as an
uninterrupted one.

Under a ``tf.distribute`` strategy (``ntm.distribute``) every replica trains on its slice of that
same global batch, and every worker runs this whole loop, evaluation included (the weights are
identical everywhere, so are the curriculum and stopping decisions, and no worker waits for
another outside the training step). Only the chief writes the run directory; multi-worker's other
workers write their checkpoints and logs into a temporary directory, removed when they finish.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from ntm.checkpoints import TrainingState, all_finite, make_checkpoint
from ntm.config import ConfigError, ModelConfig, TrainConfig, save_configs
from ntm.curriculum import Curriculum
from ntm.distribute import is_chief, is_replicated, replica_batch_size
from ntm.model import NTM
from ntm.optimizers import make_optimizer
from ntm.progress import Progress
from ntm.runs import (CHECKPOINT_DIR, METRICS_FILE, SUMMARY_FILE, TENSORBOARD_DIR,
                      write_json_atomic, write_text_atomic)
from ntm.steps import make_predict, make_replicated_train_step, make_train_step
from ntm.contract.tasks import Batch, Difficulty, Task, bit_errors

MAX_BAD_STEPS = 5  # consecutive non-finite steps before restoring the last checkpoint
MAX_RESTORES = 3  # restores without a good step in between before giving up


class TrainingError(RuntimeError):
    """Training cannot go on (repeated NaN/Inf); the message says what happened."""


@dataclass
class TrainResult:
    step: int
    sequences: int
    elapsed: float
    eval_bits: float
    reason: str  # "target", "steps", "interrupted"
    run_dir: Path


def task_for(config: TrainConfig, get_task: Callable[..., Task]) -> Task:
    """The task of a training config, with its length (and repeat) ranges; ConfigError names
    an impossible range, or a repeat range for a task without repeats."""
    task = get_task(config.task)
    lengths = repeats = None
    if config.min_length is not None or config.max_length is not None:
        lo, hi = task.train_lengths
        lengths = (lo if config.min_length is None else config.min_length,
                   hi if config.max_length is None else config.max_length)
    if config.min_repeats is not None or config.max_repeats is not None:
        if task.train_repeats is None:
            raise ConfigError(f"{task.name} has no repeats: min_repeats/max_repeats are not "
                              f"options for it")
        lo, hi = task.train_repeats
        repeats = (lo if config.min_repeats is None else config.min_repeats,
                   hi if config.max_repeats is None else config.max_repeats)
    try:
        return task.with_training_ranges(lengths, repeats)
    except ValueError as err:
        raise ConfigError(str(err)) from None


class Trainer:
    """Trains one run directory. ``resume`` continues the checkpoint that is there.

    ``strategy`` (``ntm.distribute.make_strategy``) places the variables and the training step;
    None is TensorFlow's default strategy: one device, the plain training step.
    """

    def __init__(self, run_dir: Path, model_config: ModelConfig, train_config: TrainConfig,
                 task: Task, resume: bool = False, stream=None, nan_steps: frozenset = frozenset(),
                 strategy: tf.distribute.Strategy | None = None):
        self.run_dir = Path(run_dir)
        self.model_config = model_config
        self.config = train_config
        self.task = task
        self.nan_steps = nan_steps  # test hook: steps whose loss is replaced by NaN
        self.stream = stream
        self.strategy = strategy or tf.distribute.get_strategy()
        # A ConfigError unless the global batch splits evenly over the replicas.
        replica_batch_size(train_config.batch_size, self.strategy.num_replicas_in_sync)
        # Where this process writes: the run directory, or a scratch one on a non-chief worker.
        self.out_dir = (self.run_dir if is_chief(self.strategy)
                        else Path(tempfile.mkdtemp(prefix="ntm-worker-")))
        with self.strategy.scope():  # weights, optimiser slots and counters: mirrored if replicated
            self.model = NTM(model_config, seed=train_config.seed)
            self.optimizer = make_optimizer(train_config.optimizer, self.model.trainable_variables,
                                            train_config.learning_rate, train_config.momentum)
            self.state = TrainingState()
        self.checkpoint = make_checkpoint(self.model, self.optimizer, self.state)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.out_dir / CHECKPOINT_DIR),
            max_to_keep=train_config.keep_checkpoints)
        if resume:
            latest = tf.train.latest_checkpoint(str(self.run_dir / CHECKPOINT_DIR))
            if latest is None:
                raise ConfigError(f"--resume: {self.run_dir} has no checkpoint to resume")
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        save_configs(self.out_dir, model_config, train_config)
        self.train_step = self._make_train_step()
        self.predict = make_predict(self.model)
        self.curriculum = Curriculum(task.train_lengths, task.train_repeats,
                                     train_config.curriculum_stages,
                                     train_config.curriculum_threshold)
        self.heldout = task.batch(np.random.default_rng([train_config.seed, 1]),
                                  train_config.eval_size)
        self.metrics_path = self.out_dir / METRICS_FILE
        self._truncate_metrics(int(self.state.step.numpy()))
        self.writer = tf.summary.create_file_writer(str(self.out_dir / TENSORBOARD_DIR))
        self._stop_signal: str | None = None

    # -- pieces -----------------------------------------------------------------------------
    def _make_train_step(self):
        """The plain step under the default strategy (no replica overhead); else the replicated
        one."""
        cfg = self.config
        if is_replicated(self.strategy):
            return make_replicated_train_step(self.strategy, self.model, self.optimizer,
                                              cfg.grad_clip_value, cfg.grad_clip_norm)
        return make_train_step(self.model, self.optimizer, cfg.grad_clip_value, cfg.grad_clip_norm)

    def batch_for(self, step: int) -> Batch:
        """The training batch of ``step``: a pure function of (seed, step, stage)."""
        lengths, repeats = self.curriculum.ranges(int(self.state.stage.numpy()))
        rng = np.random.default_rng([self.config.seed, 0, step])
        return self.task.batch(rng, self.config.batch_size, lengths, repeats)

    def error_on(self, batch: Batch) -> float:
        probs, _ = self.predict(batch.inputs)
        return float(bit_errors(probs.numpy(), batch.targets, batch.mask).mean())

    def stage_error(self, step: int) -> float:
        """Bits/seq at the current stage's longest sequences (decides the curriculum)."""
        lengths, repeats = self.curriculum.ranges(int(self.state.stage.numpy()))
        point = Difficulty(lengths[1], repeats[1] if repeats else None)
        rng = np.random.default_rng([self.config.seed, 2, step])
        return self.error_on(self.task.fixed_batch(rng, max(16, self.config.eval_size // 2), point))

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines past the restored step (written after the last checkpoint), and a
        last line cut short by a crash (SIGKILL mid-write). The rewrite is atomic."""
        if not self.metrics_path.exists():
            return
        keep = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # only a crash mid-write leaves a broken line
            if record.get("step", 0) <= step:
                keep.append(line)
        write_text_atomic(self.metrics_path, "".join(line + "\n" for line in keep))

    def _log(self, record: dict) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        with self.writer.as_default(step=record["step"]):
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    tf.summary.scalar(key, value)

    def save(self) -> str | None:
        """Checkpoint now, unless a weight is non-finite (then keep the last good one)."""
        if not all_finite(self.model.trainable_variables):
            return None
        return self.manager.save(checkpoint_number=int(self.state.step.numpy()))

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self._stop_signal = signal.Signals(signum).name

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to ``steps``, the target or an interrupt; a non-chief worker's scratch directory
        is removed however the run ends."""
        try:
            return self._train()
        finally:
            if self.out_dir != self.run_dir:
                self.writer.close()
                shutil.rmtree(self.out_dir, ignore_errors=True)

    def _train(self) -> TrainResult:
        cfg = self.config
        step = int(self.state.step.numpy())
        progress = Progress(cfg.steps, step, cfg.log_every, self.stream)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        bad_steps, restores, reason = 0, 0, "steps"
        current_lr = None
        t_last = time.monotonic()
        window: list[tuple[float, float]] = []
        try:
            while step < cfg.steps:
                if self._stop_signal:
                    reason = "interrupted"
                    break
                batch = self.batch_for(step + 1)
                lr = cfg.learning_rate_at(step + 1)
                if lr != current_lr:  # the config is the source of truth, also after resume
                    self.optimizer.learning_rate.assign(lr)
                    current_lr = lr
                loss, bits, finite = self.train_step(batch.inputs, batch.targets, batch.mask,
                                                     tf.constant(step + 1 in self.nan_steps))
                now = time.monotonic()
                self.state.elapsed.assign_add(now - t_last)
                t_last = now
                if not bool(finite):
                    bad_steps += 1
                    progress.message(f"step {step + 1}: non-finite loss or gradient; update skipped")
                    if bad_steps >= MAX_BAD_STEPS:
                        restores += 1
                        if restores > MAX_RESTORES or self.manager.latest_checkpoint is None:
                            raise TrainingError(
                                f"loss or gradients non-finite for {bad_steps} steps in a row at "
                                f"step {step + 1}, after {restores - 1} restore(s); no NaN was "
                                f"saved: the last good checkpoint is {self.manager.latest_checkpoint}")
                        self.checkpoint.restore(self.manager.latest_checkpoint)
                        progress.message(f"restored {self.manager.latest_checkpoint}")
                        bad_steps = 0
                    # The step still counts: the next one draws fresh data.
                    step += 1
                    self.state.step.assign(step)
                    continue
                bad_steps, restores = 0, 0
                step += 1
                self.state.step.assign(step)
                self.state.sequences.assign_add(batch.batch_size)
                window.append((float(loss), float(bits)))
                progress.update(step, {"loss": f"{float(loss):.3f}", "bits/seq": f"{float(bits):.2f}",
                                       "stage": str(int(self.state.stage.numpy()))})
                if step % cfg.log_every == 0:
                    losses, bitss = zip(*window)
                    window.clear()
                    self._log({"step": step, "sequences": int(self.state.sequences.numpy()),
                               "elapsed": round(float(self.state.elapsed.numpy()), 3),
                               "loss": float(np.mean(losses)), "bits_per_seq": float(np.mean(bitss)),
                               "stage": int(self.state.stage.numpy())})
                if step % cfg.eval_every == 0 and self._evaluate(step, progress):
                    reason = "target"
                    break
                if step % cfg.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            progress.close()
        path = self.save()
        result = TrainResult(step, int(self.state.sequences.numpy()),
                             float(self.state.elapsed.numpy()), float(self.state.last_eval.numpy()),
                             reason, self.run_dir)
        write_json_atomic(self.out_dir / SUMMARY_FILE, {
            "step": result.step, "sequences": result.sequences,
            "elapsed_seconds": round(result.elapsed, 1), "heldout_bits_per_seq": result.eval_bits,
            "stopped": reason, "checkpoint": path or self.manager.latest_checkpoint,
            "stage": int(self.state.stage.numpy()), "stages": self.curriculum.stages,
        })
        return result

    def _evaluate(self, step: int, progress: Progress) -> bool:
        """Held-out evaluation and curriculum update; True when the target is reached."""
        stage = int(self.state.stage.numpy())
        heldout = self.error_on(self.heldout)
        self.state.last_eval.assign(heldout)
        record = {"step": step, "sequences": int(self.state.sequences.numpy()),
                  "elapsed": round(float(self.state.elapsed.numpy()), 3),
                  "eval_bits_per_seq": heldout, "stage": stage}
        if not self.curriculum.is_last(stage):
            stage_error = self.stage_error(step)
            record["stage_bits_per_seq"] = stage_error
            new_stage = self.curriculum.next_stage(stage, stage_error)
            if new_stage != stage:
                self.state.stage.assign(new_stage)
                progress.message(f"step {step}: curriculum stage {new_stage}/{self.curriculum.stages}"
                                 f" (lengths {self.curriculum.ranges(new_stage)[0]})")
        self._log(record)
        progress.message(f"step {step}: held-out bits/seq {heldout:.3f} "
                         f"({int(self.state.sequences.numpy())} sequences, "
                         f"{float(self.state.elapsed.numpy()):.0f} s)")
        reached = (self.curriculum.is_last(stage) and self.config.target_error >= 0
                   and heldout <= self.config.target_error)
        self.state.good_evals.assign(int(self.state.good_evals.numpy()) + 1 if reached else 0)
        return int(self.state.good_evals.numpy()) >= self.config.patience_evals
