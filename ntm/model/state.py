"""A network's state as one flat tensor per sequence, and back (stateful exports).

The layout is the contract's (``ntm.contract.state_layout``). The NTM's: controller state, read
vectors, weightings [heads, N], memory [N, M], flattened and concatenated per sequence. The LSTM
baseline's: h then c of each layer, bottom layer first.
"""

from __future__ import annotations

import tensorflow as tf

from ntm.model.cell import NTMState
from ntm.model.config import ModelConfig
from ntm.model.lstm_baseline import BaselineState
from ntm.contract.state_layout import fixed_state_size, per_row_state_size


def pack_state(state: NTMState) -> tf.Tensor:
    """NTMState (memory [batch, N, M]) -> float32 [batch, S]."""
    batch = tf.shape(state.memory)[0]
    parts = [*state.controller, state.reads, state.weights, state.memory]
    return tf.concat([tf.reshape(p, [batch, -1]) for p in parts], axis=1)


def state_rows(flat: tf.Tensor, config: ModelConfig) -> tf.Tensor:
    """N of a packed state [batch, S]: int32 scalar (S = fixed + N x per-row floats)."""
    model = config.to_dict()
    size = tf.shape(flat)[1]
    return (size - fixed_state_size(model)) // per_row_state_size(model)


def unpack_state(flat: tf.Tensor, config: ModelConfig) -> NTMState:
    """float32 [batch, S] -> NTMState with N = ``state_rows(flat)`` rows."""
    c = config
    n = state_rows(flat, config)
    units = c.controller_size
    controller_sizes = [units, units] if c.controller == "lstm" else []
    reads_size = c.num_read_heads * c.memory_width
    sizes = controller_sizes + [reads_size, c.num_heads * n, n * c.memory_width]
    pieces = tf.split(flat, tf.stack(sizes), axis=1, num=len(sizes))
    *controller, reads, weights, memory = pieces
    return NTMState(
        controller=tuple(controller),
        memory=tf.reshape(memory, [-1, n, c.memory_width]),
        weights=tf.reshape(weights, [-1, c.num_heads, n]),
        reads=tf.reshape(reads, [-1, c.num_read_heads, c.memory_width]),
    )


def pack_baseline_state(state: BaselineState) -> tf.Tensor:
    """((h, c) per layer, [batch, units] each) -> float32 [batch, 2 x layers x units]."""
    return tf.concat([part for layer in state for part in layer], axis=1)


def unpack_baseline_state(flat: tf.Tensor, config: ModelConfig) -> BaselineState:
    """float32 [batch, 2 x layers x units] -> (h, c) per layer, [batch, units] each."""
    pieces = tf.split(flat, [config.lstm_units] * 2 * config.lstm_layers, axis=1)
    return tuple((pieces[2 * i], pieces[2 * i + 1]) for i in range(config.lstm_layers))
