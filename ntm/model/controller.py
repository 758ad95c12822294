"""Controllers: the network that reads the input and the previous read vectors (paper §3).

An LSTM (the paper's LSTM-NTM, default) or a feedforward layer (the paper's feedforward NTM).
Each is a small ``tf.Module`` with a pure ``__call__(inputs, state) -> (output, state)``.
"""

from __future__ import annotations

import tensorflow as tf


def glorot(shape: tuple[int, int], seed: int) -> tf.Tensor:
    """Glorot-uniform initial values for a [fan_in, fan_out] matrix (deterministic in ``seed``)."""
    limit = (6.0 / (shape[0] + shape[1])) ** 0.5
    return tf.random.stateless_uniform(shape, seed=[seed, 0], minval=-limit, maxval=limit)


class LSTMController(tf.Module):
    """One LSTM layer with a single fused matmul for the four gates.

    Args:
        input_size: width of the controller input (external input + read vectors).
        units: number of LSTM units.
        seed: initialisation seed.
    State: (h, c), each [batch, units]; the initial state is a learned bias (paper Tables 1-3).
    """

    def __init__(self, input_size: int, units: int, seed: int = 0, name: str = "lstm"):
        super().__init__(name=name)
        self.units = units
        self.kernel = tf.Variable(glorot((input_size + units, 4 * units), seed), name="kernel")
        # Gate order i, f, g, o; forget-gate bias 1 so memory in the cell is kept early in training.
        bias = tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], axis=0)
        self.bias = tf.Variable(bias, name="bias")
        self.initial_h = tf.Variable(tf.zeros([units]), name="initial_h")
        self.initial_c = tf.Variable(tf.zeros([units]), name="initial_c")

    def initial_state(self, batch_size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Learned (h, c), tiled to [batch, units] each."""
        h = tf.tile(self.initial_h[None, :], [batch_size, 1])
        c = tf.tile(self.initial_c[None, :], [batch_size, 1])
        return h, c

    def __call__(
        self, inputs: tf.Tensor, state: tuple[tf.Tensor, tf.Tensor]
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """inputs: [batch, input_size] -> output h [batch, units], new state (h, c)."""
        h, c = state
        z = tf.linalg.matmul(tf.concat([inputs, h], axis=1), self.kernel) + self.bias
        i, f, g, o = tf.split(z, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (h, c)


class FeedforwardController(tf.Module):
    """One tanh layer; it keeps no state of its own (the memory is its only state)."""

    def __init__(self, input_size: int, units: int, seed: int = 0, name: str = "feedforward"):
        super().__init__(name=name)
        self.units = units
        self.kernel = tf.Variable(glorot((input_size, units), seed), name="kernel")
        self.bias = tf.Variable(tf.zeros([units]), name="bias")

    def initial_state(self, batch_size: tf.Tensor) -> tuple[()]:
        return ()

    def __call__(self, inputs: tf.Tensor, state: tuple[()]) -> tuple[tf.Tensor, tuple[()]]:
        """inputs: [batch, input_size] -> output [batch, units], the empty state."""
        return tf.tanh(tf.linalg.matmul(inputs, self.kernel) + self.bias), state
