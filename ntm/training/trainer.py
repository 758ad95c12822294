"""The training loop behind ``ntm train``.

Everything a run needs to continue exactly lives in its directory: the config, checkpoints with
the weights, optimiser slots, step, sequences seen, wall time and curriculum stage. The data for
step s is drawn from ``default_rng([seed, 0, s])``, so a resumed run sees the same batches as an
uninterrupted one. The files are ``ntm.training.run_writer``'s business; this module only trains.

Under a ``tf.distribute`` strategy (``distribute``) every replica trains on its slice of that
same global batch, and every worker runs this whole loop, evaluation included (the weights are
identical everywhere, so are the curriculum and stopping decisions, and no worker waits for
another outside the training step). Only the chief writes the run directory (``RunWriter``).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ntm.training.checkpoints import TrainingState, make_checkpoint
from ntm.contract.errors import NtmError
from ntm.contract.tasks import Batch, Difficulty, bit_errors
from ntm.training.curriculum import Curriculum
from ntm.training.distribute import is_chief, is_replicated, replica_batch_size
from ntm.model.architectures import build_model
from ntm.training.optimizers import make_optimizer
from ntm.training.progress import Progress
from ntm.training.run_writer import RunWriter
from ntm.training.runs import Run
from ntm.training.schedule import Schedule
from ntm.training.steps import make_predict, make_replicated_train_step, make_train_step

MAX_BAD_STEPS = 5  # consecutive non-finite steps before restoring the last checkpoint
MAX_RESTORES = 3  # restores without a good step in between before giving up


class TrainingError(RuntimeError, NtmError):
    """Training cannot go on (repeated NaN/Inf); the message says what happened."""


@dataclass
class TrainResult:
    step: int
    sequences: int
    elapsed: float
    eval_bits: float
    reason: str  # "target", "steps", "interrupted"
    run_dir: Path


@dataclass
class _Guard:
    """The non-finite guard's counters: bad steps in a row, restores without a good step."""

    bad_steps: int = 0
    restores: int = 0


class Trainer:
    """Trains one run (``ntm.training.runs.Run.create``, or ``Run.load`` to go on with ``resume``).

    ``strategy`` (``distribute.make_strategy``) places the variables and the training step;
    None is TensorFlow's default strategy: one device, the plain training step.
    """

    def __init__(self, run: Run, resume: bool = False, stream=None,
                 strategy: tf.distribute.Strategy | None = None):
        self.run_dir = run.directory
        self.model_config = run.model_config
        self.config = train_config = run.train_config
        self.task = run.task
        self.stream = stream
        self.strategy = strategy or tf.distribute.get_strategy()
        # A ConfigError unless the global batch splits evenly over the replicas.
        replica_batch_size(train_config.batch_size, self.strategy.num_replicas_in_sync)
        with self.strategy.scope():  # weights, optimiser slots and counters: mirrored if replicated
            self.model = build_model(run.model_config, seed=train_config.seed)
            self.optimizer = make_optimizer(train_config.optimizer, self.model.trainable_variables,
                                            train_config.learning_rate, train_config.momentum)
            self.state = TrainingState()
            self.schedule = Schedule(train_config, run.model_config)
        self.writer = RunWriter(run, make_checkpoint(self.model, self.optimizer, self.state,
                                                     self.schedule.restarts,
                                                     self.schedule.polish),
                                chief=is_chief(self.strategy))
        self.out_dir = self.writer.out_dir  # where this process writes
        self.resume_note = self.writer.restore_run() if resume else None
        self.writer.start(run, int(self.state.step.numpy()))
        self.reverted: dict = {}  # set when a failed polish went back (revert_failed_polish)
        self.train_step = self._make_train_step()
        self.predict = make_predict(self.model)
        self.curriculum = Curriculum(self.task.train_lengths, self.task.train_repeats,
                                     train_config.curriculum_stages,
                                     train_config.curriculum_threshold)
        self.heldout = self.task.batch(np.random.default_rng([train_config.seed, 1]),
                                       train_config.eval_size)
        self._stop_signal: str | None = None

    # -- pieces -----------------------------------------------------------------------------
    def _make_train_step(self):
        """The plain step under the default strategy (no replica overhead); else the replicated
        one."""
        cfg = self.config
        weight = self.schedule.entropy_weight
        if is_replicated(self.strategy):
            return make_replicated_train_step(self.strategy, self.model, self.optimizer,
                                              cfg.grad_clip_value, cfg.grad_clip_norm, weight,
                                              bool(cfg.controller_noise))
        return make_train_step(self.model, self.optimizer, cfg.grad_clip_value, cfg.grad_clip_norm,
                               weight, bool(cfg.controller_noise))

    def batch_for(self, step: int) -> Batch:
        """The training batch of ``step``: a pure function of (seed, step, stage)."""
        lengths, repeats = self.curriculum.ranges(int(self.state.stage.numpy()))
        rng = np.random.default_rng([self.config.seed, 0, step])
        batch = self.task.batch(rng, self.config.batch_size, lengths, repeats)
        return self.schedule.with_blank_runs(step, batch, self.task)

    def error_on(self, batch: Batch) -> float:
        return self.evaluate_on(batch)[0]

    def evaluate_on(self, batch: Batch) -> tuple[float, dict[str, float]]:
        """(bits wrong per sequence, the task's own measures averaged over the batch: N-grams'
        cost in bits beside the optimal estimator's, which bits wrong cannot show)."""
        probs = self.predict(batch.inputs).numpy()
        measures = self.task.measures(probs, batch)
        return (float(bit_errors(probs, batch.targets, batch.mask).mean()),
                {name: float(np.mean(values)) for name, values in measures.items()})

    def stage_error(self, step: int) -> float:
        """Bits/seq at the current stage's longest sequences (decides the curriculum)."""
        lengths, repeats = self.curriculum.ranges(int(self.state.stage.numpy()))
        point = Difficulty(lengths[1], repeats[1] if repeats else None)
        rng = np.random.default_rng([self.config.seed, 2, step])
        return self.error_on(self.task.fixed_batch(rng, max(16, self.config.eval_size // 2), point))

    def save(self) -> str | None:
        """Checkpoint now, unless a weight is non-finite (then keep the last good one)."""
        return self.writer.save(int(self.state.step.numpy()), self.model.trainable_variables)

    def restart(self, step: int) -> int:
        """Re-initialise the weights from a new seed and reset the optimiser; the step counter,
        data stream, curriculum stage and clock go on. Returns the new weights' seed."""
        _, seed = self.schedule.next_restart(step)
        fresh = build_model(self.model_config, seed=seed)
        for variable, value in zip(self.model.trainable_variables, fresh.trainable_variables,
                                   strict=True):
            variable.assign(value)
        self.optimizer.reset()
        self.state.good_evals.assign(0)
        return seed

    def _on_signal(self, signum, frame) -> None:
        if self._stop_signal is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self._stop_signal = signal.Signals(signum).name

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to ``steps``, the target or an interrupt; the writer is closed (a non-chief
        worker's scratch directory removed) however the run ends."""
        try:
            return self._train()
        finally:
            self.writer.close()

    def _train(self) -> TrainResult:
        cfg = self.config
        step = int(self.state.step.numpy())
        progress = Progress(cfg.steps, step, cfg.log_every, self.stream)
        if self.resume_note:
            progress.message(self.resume_note)
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        guard, reason = _Guard(), "steps"
        window: list[tuple[float, float]] = []
        self._clock, self._lr = time.monotonic(), None
        try:
            while step < cfg.steps:
                if self._stop_signal:
                    reason = "interrupted"
                    break
                step += 1
                if not self._step(step, guard, window, progress):
                    continue
                if step % cfg.log_every == 0:
                    self._log_window(step, window)
                if step % cfg.eval_every == 0 and self._evaluate(step, progress):
                    reason = "target"
                    break
                if step % cfg.checkpoint_every == 0:
                    self.save()
            if reason == "steps":
                self.revert_failed_polish(progress)
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            progress.close()
        return self._finish(reason)

    def _step(self, step: int, guard: _Guard, window: list, progress: Progress) -> bool:
        """Train on step ``step``'s batch; False when the update was skipped (non-finite)."""
        batch = self.batch_for(step)
        lr = self.config.learning_rate_at(step)
        if lr != self._lr:  # the config is the source of truth, also after resume
            self.optimizer.learning_rate.assign(lr)
            self._lr = lr
        noise = []  # the train step's tensors after the mask (ntm.training.steps._batch_spec)
        if self.model_config.has_memory:
            noise.append(self.schedule.memory_noise_for(step, batch.batch_size))
            if self.config.controller_noise:
                noise.append(self.schedule.controller_noise_for(step, batch))
        loss, bits, finite = self.train_step(batch.inputs, batch.targets, batch.mask, *noise)
        now = time.monotonic()
        self.state.elapsed.assign_add(now - self._clock)
        self._clock = now
        self.state.step.assign(step)  # a skipped step still counts: the next draws fresh data
        if not bool(finite):
            self._on_bad_step(step, guard, progress)
            return False
        guard.bad_steps = guard.restores = 0
        self.state.sequences.assign_add(batch.batch_size)
        window.append((float(loss), float(bits)))
        progress.update(step, {"loss": f"{float(loss):.3f}", "bits/seq": f"{float(bits):.2f}",
                               "stage": str(int(self.state.stage.numpy()))})
        return True

    def _on_bad_step(self, step: int, guard: _Guard, progress: Progress) -> None:
        """Count a non-finite step; after MAX_BAD_STEPS in a row restore the last good
        checkpoint, and after MAX_RESTORES restores without a good step, stop."""
        guard.bad_steps += 1
        progress.message(f"step {step}: non-finite loss or gradient; update skipped")
        if guard.bad_steps < MAX_BAD_STEPS:
            return
        guard.restores += 1
        latest = self.writer.latest_checkpoint
        if guard.restores > MAX_RESTORES or latest is None:
            raise TrainingError(
                f"loss or gradients non-finite for {guard.bad_steps} steps in a row at step "
                f"{step}, after {guard.restores - 1} restore(s); no NaN was saved: the last "
                f"good checkpoint is {latest}")
        progress.message(f"restored {self.writer.restore_last_good()}")
        self.state.step.assign(step)  # the restore rewound the counter; the data moves on
        guard.bad_steps = 0

    def _log_window(self, step: int, window: list) -> None:
        losses, bitss = zip(*window)
        window.clear()
        self.writer.log({"step": step, "sequences": int(self.state.sequences.numpy()),
                         "elapsed": round(float(self.state.elapsed.numpy()), 3),
                         "loss": float(np.mean(losses)), "bits_per_seq": float(np.mean(bitss)),
                         "stage": int(self.state.stage.numpy())})

    def _finish(self, reason: str) -> TrainResult:
        """The last checkpoint and summary.json."""
        path = self.save()
        result = TrainResult(int(self.state.step.numpy()), int(self.state.sequences.numpy()),
                             float(self.state.elapsed.numpy()), float(self.state.last_eval.numpy()),
                             reason, self.run_dir)
        self.writer.write_summary({
            "step": result.step, "sequences": result.sequences,
            "elapsed_seconds": round(result.elapsed, 1), "heldout_bits_per_seq": result.eval_bits,
            "stopped": reason, "checkpoint": path or self.writer.latest_checkpoint,
            "stage": int(self.state.stage.numpy()), "stages": self.curriculum.stages,
            **self.reverted,
        })
        return result

    def _evaluate(self, step: int, progress: Progress) -> bool:
        """Held-out evaluation and curriculum update; True when the target is reached."""
        stage = int(self.state.stage.numpy())
        heldout, measures = self.evaluate_on(self.heldout)
        self.state.last_eval.assign(heldout)
        record = {"step": step, "sequences": int(self.state.sequences.numpy()),
                  "elapsed": round(float(self.state.elapsed.numpy()), 3),
                  "eval_bits_per_seq": heldout, "stage": stage,
                  **{f"eval_{name}": value for name, value in measures.items()}}
        if not self.curriculum.is_last(stage):
            stage_error = self.stage_error(step)
            record["stage_bits_per_seq"] = stage_error
            new_stage = self.curriculum.next_stage(stage, stage_error)
            if new_stage != stage:
                self.state.stage.assign(new_stage)
                progress.message(f"step {step}: curriculum stage {new_stage}/{self.curriculum.stages}"
                                 f" (lengths {self.curriculum.ranges(new_stage)[0]})")
        if self.schedule.restart_due(step, heldout):
            seed = self.restart(step)
            record["restart"] = {"attempt": int(self.schedule.restarts.count.numpy()),
                                 "seed": seed}
            progress.message(f"step {step}: held-out {heldout:.3f} bits/seq after "
                             f"{self.config.restart_at} steps: weights re-initialised with seed "
                             f"{seed} (restart {record['restart']['attempt']})")
        self.writer.log(record)
        progress.message(f"step {step}: held-out bits/seq {heldout:.3f}"
                         + "".join(f", {name} {value:.3f}" for name, value in measures.items())
                         + f" ({int(self.state.sequences.numpy())} sequences, "
                         f"{float(self.state.elapsed.numpy()):.0f} s)")
        reached = (self.curriculum.is_last(stage) and self.config.target_error >= 0
                   and heldout <= self.config.target_error)
        self.state.good_evals.assign(int(self.state.good_evals.numpy()) + 1 if reached else 0)
        if reached and self.schedule.polish_begins(step):
            self.state.good_evals.assign(0)  # the target must hold again, polished
            progress.message(f"step {step}: target reached; polishing for "
                             f"{self.config.polish_steps} steps with write entropy "
                             f"{self.config.write_entropy:g}" + self.schedule.noise_plan())
        if reached and self.schedule.polish is not None:
            self.writer.save_at_target(step, self.model.trainable_variables)
        return (int(self.state.good_evals.numpy()) >= self.config.patience_evals
                and self.schedule.polish_done(step))

    def revert_failed_polish(self, progress: Progress) -> None:
        """At the step budget, a polishing run whose last held-out evaluation is above the
        target goes back to the weights of its last evaluation that met it (the polish knocked
        it over and it did not recover in time): training never ends on a model worse than one
        it had. The step, data and optimiser stay where they are (``--resume`` trains on)."""
        cfg = self.config
        if self.schedule.polish is None or cfg.target_error < 0:
            return
        last = float(self.state.last_eval.numpy())
        if last <= cfg.target_error:
            return
        kept = self.writer.restore_at_target()
        if kept is None:
            return
        heldout = self.error_on(self.heldout)
        self.state.last_eval.assign(heldout)
        self.reverted = {"weights_from_step": kept, "polish_heldout_bits_per_seq": last}
        self.writer.log({"step": int(self.state.step.numpy()), "eval_bits_per_seq": heldout,
                         "stage": int(self.state.stage.numpy()), **self.reverted})
        progress.message(f"polishing ended above the target ({last:.3f} bits/seq held out): "
                         f"back to the weights of step {kept} ({heldout:.3f} bits/seq), the last "
                         f"that met it")
