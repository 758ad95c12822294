"""What a run switches on and off as it goes: the polish phase (the write-entropy term), the
noises and blank runs that join it, and restarts from a plateau (``TrainConfig``'s fields of
those names). Every decision is a pure function of the step and of the two small states the
checkpoint keeps (``PolishState``, ``RestartState``), so a resumed run decides as an
uninterrupted one; the noise is drawn from ``default_rng([seed, stream, step])`` like the data.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ntm.contract.tasks import Batch, Task
from ntm.model.config import ModelConfig
from ntm.training.checkpoints import PolishState, RestartState
from ntm.training.config import TrainConfig

# A restarted run's weights come from seed + RESTART_SEED_STRIDE * attempt: far from the seeds a
# sweep uses side by side (1, 2, 3...), so a restart never repeats another seed's start.
RESTART_SEED_STRIDE = 7919
MEMORY_NOISE_STREAM, CONTROLLER_NOISE_STREAM, BLANK_RUNS_STREAM = 3, 4, 5  # rng streams


class Schedule:
    """The run's schedule; build it inside the strategy's scope (its states are variables)."""

    def __init__(self, config: TrainConfig, model_config: ModelConfig):
        self.config = config
        self.model_config = model_config
        self.restarts = RestartState() if config.restart_at else None
        self.polish = PolishState() if config.polishes else None

    # -- the write-entropy term ---------------------------------------------------------------
    @property
    def entropy_weight(self) -> tf.Variable | float:
        """What the training step multiplies the write heads' entropy by: a variable that is 0
        until the polish begins (a run that polishes), else the configured weight."""
        return self.polish.entropy_weight if self.polish is not None else self.config.write_entropy

    def polish_begins(self, step: int) -> bool:
        """Switch the write-entropy term on the first time the target is reached (a run that
        polishes); True when it begins now (the target must then hold again to stop)."""
        if self.polish is None or int(self.polish.since.numpy()) >= 0:
            return False
        self.polish.since.assign(step)
        self.polish.entropy_weight.assign(self.config.write_entropy)
        return True

    def polish_done(self, step: int) -> bool:
        """True unless the run polishes and has not yet trained its polish steps."""
        if self.polish is None:
            return True
        since = int(self.polish.since.numpy())
        return since >= 0 and step - since >= self.config.polish_steps

    # -- noise and blank runs -----------------------------------------------------------------
    def noise_on(self, step: int) -> bool:
        """True when ``step`` trains with noise (memory, controller) and blank runs: the run
        has some, from the first step, or (a run that polishes) once ``noise_after`` polish
        steps are done."""
        if not self.config.noisy:
            return False
        if self.polish is None:
            return True
        since = int(self.polish.since.numpy())
        return since >= 0 and step - since > self.config.noise_after

    def memory_noise_for(self, step: int, batch_size: int) -> np.ndarray:
        """What ``step``'s sequences add to their initial memory, [batch, N, M] float32 (scale
        ``memory_noise``)."""
        shape = (batch_size, self.model_config.memory_size, self.model_config.memory_width)
        return self._noise(step, MEMORY_NOISE_STREAM, self.config.memory_noise, shape)

    def controller_noise_for(self, step: int, batch: Batch) -> np.ndarray:
        """What ``step``'s sequences add to the controller's cell state after each time step,
        [batch, time, units] float32 (scale ``controller_noise``)."""
        shape = (batch.batch_size, batch.inputs.shape[1], self.model_config.controller_size)
        return self._noise(step, CONTROLLER_NOISE_STREAM, self.config.controller_noise, shape)

    def _noise(self, step: int, stream: int, scale: float, shape: tuple[int, ...]) -> np.ndarray:
        """Zeros unless ``step`` trains with noise and ``scale`` > 0; then Gaussian, its
        standard deviation drawn per sequence (the first axis) from [0, scale]."""
        if not scale or not self.noise_on(step):
            return np.zeros(shape, np.float32)
        rng = np.random.default_rng([self.config.seed, stream, step])
        per_sequence = scale * rng.uniform(size=(shape[0],) + (1,) * (len(shape) - 1))
        return (per_sequence * rng.standard_normal(shape)).astype(np.float32)

    def with_blank_runs(self, step: int, batch: Batch, task: Task) -> Batch:
        """``step``'s batch with runs of blank items in a fraction ``blank_runs`` of its
        sequences, when the noise is on (``Task.with_blank_runs``); else as it is."""
        if not self.config.blank_runs or not self.noise_on(step):
            return batch
        rng = np.random.default_rng([self.config.seed, BLANK_RUNS_STREAM, step])
        return task.with_blank_runs(batch, rng, self.config.blank_runs)

    def noise_plan(self) -> str:
        """", memory noise 0.5 and blank runs 0.3 from polish step 3001": what joins the polish."""
        cfg = self.config
        if not cfg.noisy:
            return ""
        kinds = [f"{kind} {value:g}" for kind, value in
                 (("memory noise", cfg.memory_noise), ("controller noise", cfg.controller_noise),
                  ("blank runs", cfg.blank_runs)) if value]
        return f", {' and '.join(kinds)} from polish step {cfg.noise_after + 1}"

    # -- restarts -----------------------------------------------------------------------------
    def restart_due(self, step: int, heldout: float) -> bool:
        """True when ``restart_at`` steps have passed since the start (or the last restart) and
        held-out bits/seq is still above ``restart_above``: the run is stuck on a plateau."""
        cfg = self.config
        return (self.restarts is not None and heldout > cfg.restart_above
                and step - int(self.restarts.since.numpy()) >= cfg.restart_at)

    def next_restart(self, step: int) -> tuple[int, int]:
        """Count a restart at ``step``: (its attempt number, the new weights' seed)."""
        attempt = int(self.restarts.count.numpy()) + 1
        self.restarts.count.assign(attempt)
        self.restarts.since.assign(step)
        return attempt, self.config.seed + RESTART_SEED_STRIDE * attempt
