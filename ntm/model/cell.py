"""One time step of the NTM (paper §3): controller -> heads -> read and write.

``NTMCell.step`` is a pure function of (input, state): all memory lives in the explicit
``NTMState`` tuple that is passed in and returned, never on ``self``, so the same step serves a
``tf.while_loop``, an unrolled loop, a SavedModel and an ONNX graph.

Head parameters (paper §3.3, activations as in the paper and Collier & Beel 2018):
    key        k_t      linear                [batch, heads, M]
    strength   beta_t   softplus  (>= 0)      [batch, heads, 1]
    gate       g_t      sigmoid   (0..1)      [batch, heads, 1]
    shift      s_t      softmax over S        [batch, heads, S]
    gamma      gamma_t  1 + softplus (>= 1)   [batch, heads, 1]
    erase      e_t      sigmoid              [batch, write_heads, M]
    add        a_t      tanh                 [batch, write_heads, M]
Heads are ordered read heads first, then write heads, along the ``heads`` axis.

The number of memory rows N is chosen when the model runs (``memory_size`` arguments below):
the weights do not depend on it. Two rules carry a model trained at N0 = ``config.memory_size``
rows to N rows, both the identity at N0 (training uses N0 as a Python int, so its graph is
static and unchanged):
- the learned initial weighting is extended by ``extend_initial_logits``: the added rows start
  with (almost) no weight (``config.grow_logit_margin``);
- the content key strength is scaled by ``strength_scale`` = (log N / log N0)^p
  (p = ``config.grow_strength_power``, 2): a softmax over more rows spreads its mass over more
  near-matches, and a larger strength restores the focus the model learned (the "log n"
  scaling of attention logits for longer inputs).
Both were chosen by measurement (``benchmarks/memory_rules.py``; docs/memory.md).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from ntm.model.addressing import address, shift_indices, shift_indices_tensor
from ntm.model.config import ModelConfig
from ntm.model.controller import FeedforwardController, LSTMController, glorot
from ntm.model.memory import erase_and_add, read

MemorySize = int | tf.Tensor  # N: a Python int (static) or an int32 scalar tensor (per call)


def extend_initial_logits(logits: tf.Tensor, memory_size: MemorySize,
                          margin: float = 30.0) -> tf.Tensor:
    """The learned initial weighting logits, trained at N0 rows, for N rows.

    logits: [heads, N0] -> [heads, N]. N > N0: rows N0..N-1 get each head's minimum logit
    minus ``margin`` (30: exp(-30) ~ 1e-13, so the trained rows keep their initial weighting);
    N < N0: the first N rows are kept; N == N0 (static): unchanged.
    """
    trained = logits.shape[1]
    if isinstance(memory_size, int) and memory_size == trained:
        return logits
    floor = tf.reduce_min(logits, axis=1, keepdims=True) - margin  # [heads, 1]
    extra = tf.maximum(memory_size - trained, 0)
    padded = tf.concat([logits, tf.tile(floor, tf.stack([1, extra]))], axis=1)
    return padded[:, :memory_size]


def strength_scale(memory_size: MemorySize, trained: int, power: float = 2.0
                   ) -> tf.Tensor | None:
    """The factor on the content key strength at N rows: (log N / log N0)^power; None (no
    factor) at the trained N0. Returns a float32 scalar tensor."""
    if isinstance(memory_size, int) and memory_size == trained:
        return None
    n = tf.cast(memory_size, tf.float32)
    return (tf.math.log(n) / tf.math.log(tf.constant(float(trained)))) ** power


class MemoryRows(NamedTuple):
    """What a sequence's number of rows N fixes for every step (loop-invariant).

    shift_table:    int32 [S, N], the circular shift's index table (``shift_indices``)
    strength_scale: float32 [] or None, the factor on the content key strength
    """

    shift_table: tf.Tensor
    strength_scale: tf.Tensor | None


class NTMState(NamedTuple):
    """Everything that carries from one time step to the next.

    controller: controller state, (h, c) each [batch, units] for the LSTM, () for feedforward.
    memory:     M_t   [batch, N, M]
    weights:    w_t   [batch, heads, N]  (read heads first, then write heads)
    reads:      r_t   [batch, read_heads, M]
    """

    controller: tuple
    memory: tf.Tensor
    weights: tf.Tensor
    reads: tf.Tensor


class HeadParameters(NamedTuple):
    key: tf.Tensor
    strength: tf.Tensor
    gate: tf.Tensor
    shift: tf.Tensor
    gamma: tf.Tensor
    erase: tf.Tensor
    add: tf.Tensor


class NTMCell(tf.Module):
    """The NTM's per-step computation and its parameters.

    Args:
        config: the architecture (memory N x M, controller, heads, shift range, clipping).
        seed: initialisation seed (weights are a deterministic function of it).
    """

    def __init__(self, config: ModelConfig, seed: int = 0, name: str = "ntm_cell"):
        super().__init__(name=name)
        self.config = config
        c = config
        controller_in = c.input_size + c.num_read_heads * c.memory_width
        if c.controller == "lstm":
            self.controller = LSTMController(controller_in, c.controller_size, seed=seed)
        else:
            self.controller = FeedforwardController(controller_in, c.controller_size, seed=seed)
        self._per_head = c.memory_width + 3 + c.num_shifts  # key, strength, gate, shift, gamma
        num_params = c.num_heads * self._per_head + c.num_write_heads * 2 * c.memory_width
        self.head_kernel = tf.Variable(glorot((c.controller_size, num_params), seed + 1),
                                       name="head_kernel")
        self.head_bias = tf.Variable(tf.zeros([num_params]), name="head_bias")
        output_in = c.controller_size + c.num_read_heads * c.memory_width
        self.output_kernel = tf.Variable(glorot((output_in, c.output_size), seed + 2),
                                         name="output_kernel")
        self.output_bias = tf.Variable(tf.zeros([c.output_size]), name="output_bias")
        # Learned initial read vectors and weightings (Collier & Beel). The initial weighting
        # starts focused on row 0 so that shifts have a definite place to move from.
        self.initial_reads = tf.Variable(
            tf.random.stateless_uniform([c.num_read_heads, c.memory_width], seed=[seed + 3, 0],
                                        minval=-0.1, maxval=0.1), name="initial_reads")
        logits = tf.one_hot(tf.zeros([c.num_heads], tf.int32), c.memory_size, on_value=5.0)
        self.initial_weight_logits = tf.Variable(logits, name="initial_weight_logits")
        # The paper's learned initial memory, on request: small distinct rows, so that content
        # addressing can tell them apart from the first step (equal rows could not be).
        self.initial_memory = None
        if c.initial_memory == "learned":
            self.initial_memory = tf.Variable(
                tf.random.stateless_uniform([c.memory_size, c.memory_width], seed=[seed + 4, 0],
                                            minval=-0.1, maxval=0.1), name="initial_memory")

    def memory_size(self, memory_size: MemorySize | None) -> MemorySize:
        """N for a call: ``memory_size`` when given, else the configured (trained) N."""
        return self.config.memory_size if memory_size is None else memory_size

    def initial_state(self, batch_size: tf.Tensor, memory_size: MemorySize | None = None
                      ) -> NTMState:
        """The state before the first input: learned biases, memory ``initial_memory_rows``,
        N = ``memory_size`` rows (default: the configured N)."""
        c = self.config
        n = self.memory_size(memory_size)
        memory = tf.tile(self.initial_memory_rows(n)[None], tf.stack([batch_size, 1, 1]))
        logits = extend_initial_logits(self.initial_weight_logits, n, c.grow_logit_margin)
        weights = tf.tile(tf.nn.softmax(logits)[None], [batch_size, 1, 1])
        reads = tf.tile(self.initial_reads[None], [batch_size, 1, 1])
        return NTMState(self.controller.initial_state(batch_size), memory, weights, reads)

    def initial_memory_rows(self, memory_size: MemorySize) -> tf.Tensor:
        """M_0 for N rows: [N, M]. Constant ``memory_init`` everywhere; with a learned initial
        memory its N0 trained rows, then (N > N0) rows of ``memory_init``, as the learned
        weighting leaves added rows out (``extend_initial_logits``)."""
        c = self.config
        if self.initial_memory is None:
            return tf.fill(tf.stack([memory_size, c.memory_width]),
                           tf.constant(c.memory_init, tf.float32))
        if isinstance(memory_size, int) and memory_size == c.memory_size:
            return self.initial_memory
        extra = tf.maximum(memory_size - c.memory_size, 0)
        added = tf.fill(tf.stack([extra, c.memory_width]), tf.constant(c.memory_init, tf.float32))
        return tf.concat([self.initial_memory, added], axis=0)[:memory_size]

    def memory_rows(self, memory_size: MemorySize | None = None) -> MemoryRows:
        """What N rows fix for every step (shift table, strength scale): make it once per
        sequence and pass it to every ``step``. Constants for a static N."""
        n = self.memory_size(memory_size)
        if isinstance(n, int):
            table = tf.constant(shift_indices(n, self.config.shift_range))
        else:
            n = tf.cast(n, tf.int32)
            table = shift_indices_tensor(n, self.config.shift_range)
        return MemoryRows(table, strength_scale(n, self.config.memory_size,
                                                self.config.grow_strength_power))

    def head_parameters(self, controller_output: tf.Tensor) -> HeadParameters:
        """Linear map of the controller output, clipped, split and activated per head.

        controller_output: [batch, units] -> HeadParameters with the shapes in the module doc.
        """
        c = self.config
        z = tf.linalg.matmul(controller_output, self.head_kernel) + self.head_bias
        z = tf.clip_by_value(z, -c.clip_value, c.clip_value)
        # Splits, not slices: one ONNX node each, where z[:, a:b] would cost one per piece.
        heads_width = c.num_heads * self._per_head
        if c.num_write_heads == 1:
            # [batch, 1, params]: one split gives erase and add already shaped
            # [batch, 1, M] (one ONNX node per step fewer).
            heads_part, erase, add = tf.split(
                tf.reshape(z, [-1, 1, z.shape[1]]),
                [heads_width, c.memory_width, c.memory_width], axis=2)
        else:
            heads_part, write_part = tf.split(
                z, [heads_width, c.num_write_heads * 2 * c.memory_width], axis=1)
            write = tf.reshape(write_part, [-1, c.num_write_heads, 2 * c.memory_width])
            erase, add = tf.split(write, 2, axis=2)
        per_head = tf.reshape(heads_part, [-1, c.num_heads, self._per_head])
        key, strength, gate, shift, gamma = tf.split(
            per_head, [c.memory_width, 1, 1, c.num_shifts, 1], axis=2)
        return HeadParameters(
            key=key,
            strength=tf.nn.softplus(strength),
            gate=tf.sigmoid(gate),
            shift=tf.nn.softmax(shift, axis=-1),
            gamma=1.0 + tf.nn.softplus(gamma),
            erase=tf.sigmoid(erase),
            add=tf.tanh(add),
        )

    def step(self, inputs: tf.Tensor, state: NTMState, rows: MemoryRows
             ) -> tuple[tf.Tensor, NTMState]:
        """One time step of the recurrence.

        inputs: [batch, input_size]; state: NTMState at t-1 (memory [batch, N, M]);
        rows: ``memory_rows(N)``
        -> controller output h_t [batch, units], NTMState at t.
        All heads address M_{t-1}; read heads read M_{t-1}; then the write heads write M_t.
        The output layer is not here: nothing in the recurrence depends on it, so the model
        applies ``output_logits`` to every step at once after its loop (one matrix product
        instead of one per step, and four fewer ONNX nodes per step).
        """
        c = self.config
        reads_flat = tf.reshape(state.reads, [-1, c.num_read_heads * c.memory_width])
        controller_out, controller_state = self.controller(
            tf.concat([inputs, reads_flat], axis=1), state.controller)
        p = self.head_parameters(controller_out)
        strength = p.strength if rows.strength_scale is None else p.strength * rows.strength_scale
        weights = address(p.key, strength, p.gate, p.shift, p.gamma, state.weights,
                          state.memory, rows.shift_table)
        read_weights, write_weights = tf.split(weights, [c.num_read_heads, c.num_write_heads],
                                               axis=1)
        reads = read(read_weights, state.memory)
        memory = erase_and_add(state.memory, write_weights, p.erase, p.add)
        return controller_out, NTMState(controller_state, memory, weights, reads)

    def output_logits(self, controller_out: tf.Tensor, reads: tf.Tensor) -> tf.Tensor:
        """The output layer for every step: y_t = clip(W [h_t; r_t] + b).

        controller_out: [batch, time, units]; reads: [batch, time, read_heads, M]
        -> logits [batch, time, output_size].
        """
        c = self.config
        shape = tf.shape(reads)
        reads_flat = tf.reshape(reads, [shape[0], shape[1], c.num_read_heads * c.memory_width])
        logits = tf.linalg.matmul(tf.concat([controller_out, reads_flat], axis=2),
                                  self.output_kernel) + self.output_bias
        return tf.clip_by_value(logits, -c.clip_value, c.clip_value)
