"""The NTM over time: the cell's step applied to every input vector.

Two loops give the same outputs (tested):
- ``dynamic``: a ``tf.while_loop`` over a ``None`` time axis; one traced graph serves every
  sequence length (tf2onnx turns it into one ONNX ``Loop``).
- ``unrolled``: a Python loop over a static length; a straight-line graph, for fixed-length
  exports and for the fastest per-step execution.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from ntm.model.cell import MemorySize, NTMCell, NTMState
from ntm.model.config import ModelConfig


class ModelOutput(NamedTuple):
    """What the NTM returns for a batch of sequences.

    logits:  [batch, time, output_size]   (apply a sigmoid for bit probabilities)
    weights: [batch, time, heads, N]      each head's weighting per step, read heads first
    memory:  [batch, time, N, M] or None  the memory after each step, when asked for
    state:   NTMState                     the state after the last step, from which a later
                                          call can go on (stateful sequences)
    (N: the call's memory_size)
    """

    logits: tf.Tensor
    weights: tf.Tensor
    memory: tf.Tensor | None
    state: NTMState | None = None


class NTM(tf.Module):
    """A Neural Turing Machine (paper §3) built on ``tf.Module``.

    Args:
        config: the architecture.
        seed: initialisation seed.
    """

    def __init__(self, config: ModelConfig, seed: int = 0, name: str = "ntm"):
        super().__init__(name=name)
        self.config = config
        self.cell = NTMCell(config, seed=seed)

    def __call__(
        self, inputs: tf.Tensor, unroll: bool = False, return_memory: bool = False,
        memory_size: MemorySize | None = None,
    ) -> ModelOutput:
        """inputs: [batch, time, input_size] float32 -> ModelOutput.

        ``unroll=True`` needs a static time dimension; otherwise the time axis may be ``None``.
        ``memory_size``: N for this call, a Python int or an int32 scalar tensor [default: the
        configured N]; the learned initial weighting is extended to it (``ntm.model.cell``).
        """
        if unroll:
            return self.run_unrolled(inputs, return_memory, memory_size)
        return self.run_dynamic(inputs, return_memory, memory_size)

    def run_dynamic(self, inputs: tf.Tensor, return_memory: bool = False,
                    memory_size: MemorySize | None = None,
                    initial: NTMState | None = None,
                    controller_noise: tf.Tensor | None = None) -> ModelOutput:
        """A ``tf.while_loop`` over the time axis, whatever its length.

        ``initial``: the state to start from [default: the learned initial state]; a state
        returned by an earlier call (``ModelOutput.state``) continues that sequence, and then
        ``memory_size`` must be its memory's N. The output's ``state`` is the final state.
        ``controller_noise`` [batch, time, units] (training only, LSTM controllers): added to
        the LSTM's cell state after each step (``add_to_cell_state``).
        """
        batch_size = tf.shape(inputs)[0]
        time_steps = tf.shape(inputs)[1]
        time_major = tf.transpose(inputs, [1, 0, 2])
        inputs_ta = tf.TensorArray(tf.float32, size=time_steps).unstack(time_major)
        # One TensorArray per per-step output; the memory only when asked for (an unused
        # TensorArray in the loop would leave tf2onnx without a scan output to map it to).
        names = ["controller", "reads", "weights"] + (["memory"] if return_memory else [])
        arrays = tuple(tf.TensorArray(tf.float32, size=time_steps) for _ in names)

        rows = self.cell.memory_rows(memory_size)  # loop-invariant
        noise_ta = None
        if controller_noise is not None:
            noise_ta = tf.TensorArray(tf.float32, size=time_steps).unstack(
                tf.transpose(controller_noise, [1, 0, 2]))

        def body(t, state, arrays):
            controller_out, state = self.cell.step(inputs_ta.read(t), state, rows)
            if noise_ta is not None:
                state = add_to_cell_state(state, noise_ta.read(t))
            values = (controller_out, state.reads, state.weights, state.memory)
            return t + 1, state, tuple(a.write(t, v) for a, v in zip(arrays, values))

        if initial is None:
            initial = self.cell.initial_state(batch_size, memory_size)
        _, final, arrays = tf.while_loop(
            # The trip count alone bounds the loop: a `t < time_steps` condition as well would
            # add seven nodes (compare, casts, and) to every ONNX Loop iteration.
            lambda *_: True,
            body,
            (tf.constant(0), initial, arrays),
            maximum_iterations=time_steps,
        )
        return self._outputs(*[_batch_major(a.stack()) for a in arrays])._replace(state=final)

    def run_unrolled(self, inputs: tf.Tensor, return_memory: bool = False,
                     memory_size: MemorySize | None = None) -> ModelOutput:
        """A Python loop over a static time axis: one copy of the step per time step."""
        time_steps = inputs.shape[1]
        if time_steps is None:
            raise ValueError("run_unrolled needs a static time dimension; use run_dynamic")
        state = self.cell.initial_state(tf.shape(inputs)[0], memory_size)
        rows = self.cell.memory_rows(memory_size)
        per_step: list[list[tf.Tensor]] = [[], [], []] + ([[]] if return_memory else [])
        for step_inputs in tf.unstack(inputs, axis=1):  # one Split in ONNX, not a Slice per step
            controller_out, state = self.cell.step(step_inputs, state, rows)
            values = (controller_out, state.reads, state.weights, state.memory)
            for collected, value in zip(per_step, values):
                collected.append(value)
        return self._outputs(*[tf.stack(collected, axis=1)
                               for collected in per_step])._replace(state=state)

    def _outputs(self, controller_out: tf.Tensor, reads: tf.Tensor, weights: tf.Tensor,
                 memory: tf.Tensor | None = None) -> ModelOutput:
        """Per-step values, batch-major ([batch, time, ...]) -> ModelOutput (output layer
        applied to all steps at once)."""
        return ModelOutput(self.cell.output_logits(controller_out, reads), weights, memory)


def add_to_cell_state(state: NTMState, noise: tf.Tensor) -> NTMState:
    """The state with ``noise`` [batch, units] added to the LSTM's cell state c (training with
    ``TrainConfig.controller_noise``): what the controller holds in c alone then blurs step by
    step, and a decision that needs c exact costs, as it would after a long input."""
    h, c = state.controller
    return state._replace(controller=(h, c + noise))


def _batch_major(time_major: tf.Tensor) -> tf.Tensor:
    """[time, batch, ...] -> [batch, time, ...]."""
    rank = time_major.shape.rank
    return tf.transpose(time_major, [1, 0] + list(range(2, rank)))
