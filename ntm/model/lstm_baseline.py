"""The paper's LSTM baseline (Graves et al. 2014, §4 and §4.6, Table 3): the network the NTM is
compared with on every task, with no memory.

    x_t -> LSTM layer 1 -> ... -> LSTM layer L -> y_t = clip(W h^L_t + b)

Symbols (per layer l, as in ``ntm.model.controller.LSTMController``, which each layer is):
    h^l_t, c^l_t   hidden and cell state          [batch, units]
    h^0_t = x_t    the external input             [batch, input_size]
    [i f g o] = [h^{l-1}_t; h^l_{t-1}] W^l + b^l, then
    c^l_t = sigmoid(f) c^l_{t-1} + sigmoid(i) tanh(g),   h^l_t = sigmoid(o) tanh(c^l_t)
    y_t            logits (the output layer reads the top layer only)  [batch, output_size]

Every sequence starts from a learned (h, c) per layer, as the NTM's controller does. The paper
does not spell out the wiring of its stack; this one is the plain stack (no skip connections
from the input to the upper layers, nor from the lower layers to the output, which Graves
(2013) used), and has about 2% fewer parameters than Table 3 lists (docs/training.md).

The surface is the NTM's (``ntm.model.machine``) without the memory: ``config``, a call on
[batch, time, input_size] returning the logits and the final state, ``initial_state``,
``run_dynamic`` / ``run_unrolled``, and the variables of a ``tf.Module``.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from ntm.model.config import ModelConfig
from ntm.model.controller import LSTMController, glorot

# ((h, c) of layer 1, ..., (h, c) of layer L), each [batch, units]
BaselineState = tuple


class BaselineOutput(NamedTuple):
    """What the LSTM baseline returns for a batch of sequences.

    logits: [batch, time, output_size]  (apply a sigmoid for bit probabilities)
    state:  BaselineState               (h, c) per layer after the last step
    """

    logits: tf.Tensor
    state: BaselineState | None = None


class LSTMBaseline(tf.Module):
    """Stacked LSTM layers and a linear output layer (paper §4.6).

    Args:
        config: ``architecture`` "lstm"; its ``lstm_layers`` (L), ``lstm_units``,
            ``input_size``, ``output_size`` and ``clip_value`` are read.
        seed: initialisation seed (the weights are a deterministic function of it).
    """

    def __init__(self, config: ModelConfig, seed: int = 0, name: str = "lstm_baseline"):
        super().__init__(name=name)
        if config.has_memory:
            raise ValueError(f"LSTMBaseline needs architecture 'lstm', got "
                             f"{config.architecture!r}")
        self.config = config
        units = config.lstm_units
        self.layers = [LSTMController(config.input_size if i == 0 else units, units,
                                      seed=seed + i, name=f"layer_{i + 1}")
                       for i in range(config.lstm_layers)]
        self.output_kernel = tf.Variable(glorot((units, config.output_size),
                                                seed + config.lstm_layers), name="output_kernel")
        self.output_bias = tf.Variable(tf.zeros([config.output_size]), name="output_bias")

    def initial_state(self, batch_size: tf.Tensor) -> BaselineState:
        """The learned (h, c) of every layer, tiled to [batch, units] each."""
        return tuple(layer.initial_state(batch_size) for layer in self.layers)

    def step(self, inputs: tf.Tensor, state: BaselineState) -> tuple[tf.Tensor, BaselineState]:
        """One time step up the stack.

        inputs: [batch, input_size]; state: (h, c) per layer at t-1
        -> top layer's h_t [batch, units], (h, c) per layer at t.
        The output layer is applied after the loop, to every step at once (as the NTM does).
        """
        below, new_state = inputs, []
        for layer, layer_state in zip(self.layers, state):
            below, layer_state = layer(below, layer_state)
            new_state.append(layer_state)
        return below, tuple(new_state)

    def output_logits(self, top: tf.Tensor) -> tf.Tensor:
        """y_t = clip(W h^L_t + b): top [batch, time, units] -> logits [batch, time, out]."""
        logits = tf.linalg.matmul(top, self.output_kernel) + self.output_bias
        return tf.clip_by_value(logits, -self.config.clip_value, self.config.clip_value)

    def __call__(self, inputs: tf.Tensor, unroll: bool = False) -> BaselineOutput:
        """inputs: [batch, time, input_size] float32 -> BaselineOutput.

        ``unroll=True`` needs a static time dimension; otherwise the time axis may be ``None``.
        """
        return self.run_unrolled(inputs) if unroll else self.run_dynamic(inputs)

    def run_dynamic(self, inputs: tf.Tensor, initial: BaselineState | None = None
                    ) -> BaselineOutput:
        """A ``tf.while_loop`` over the time axis, whatever its length. ``initial``: the state
        to start from [default: the learned initial state]; the output's ``state`` is the
        final one, from which a later call goes on."""
        time_steps = tf.shape(inputs)[1]
        inputs_ta = tf.TensorArray(tf.float32, size=time_steps).unstack(
            tf.transpose(inputs, [1, 0, 2]))
        tops = tf.TensorArray(tf.float32, size=time_steps)

        def body(t, state, tops):
            top, state = self.step(inputs_ta.read(t), state)
            return t + 1, state, tops.write(t, top)

        if initial is None:
            initial = self.initial_state(tf.shape(inputs)[0])
        _, final, tops = tf.while_loop(lambda *_: True, body, (tf.constant(0), initial, tops),
                                       maximum_iterations=time_steps)
        top = tf.transpose(tops.stack(), [1, 0, 2])
        return BaselineOutput(self.output_logits(top), final)

    def run_unrolled(self, inputs: tf.Tensor) -> BaselineOutput:
        """A Python loop over a static time axis: one copy of the step per time step."""
        if inputs.shape[1] is None:
            raise ValueError("run_unrolled needs a static time dimension; use run_dynamic")
        state = self.initial_state(tf.shape(inputs)[0])
        tops = []
        for step_inputs in tf.unstack(inputs, axis=1):
            top, state = self.step(step_inputs, state)
            tops.append(top)
        return BaselineOutput(self.output_logits(tf.stack(tops, axis=1)), state)
