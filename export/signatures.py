"""The exported computations: inputs (and the memory size) -> (probabilities, attention).

Dynamic length: the number of memory rows N is chosen per call through a second input,
``memory_size`` (int32 [k], any k >= 1; the largest entry is used, so a batching server that
stacks one value per request still works). An entry <= 0 asks the model to choose: the
smallest of its memory buckets that holds what an input of that many time steps can need
(``ntm.contract.memory_plan``, the rule ``ntm serve`` follows). Fixed length: the loop is
unrolled and N is fixed at export (``ntm export`` picks the N the length needs).

Stateful (``stateful=True``, dynamic length only): two more inputs and one more output carry a
sequence across calls (layout: ``ntm.contract.state_layout``)::

    sequence_start  int32 [k]       non-zero: start from the learned initial state with
                                    N = max(memory_size) rows; 0: go on from ``state``
    state           float32 [batch, S]   the state a previous call returned (ignored at a start)
    state_out       float32 [batch, S]   the state after this call's last step

SavedModel signatures follow TF Serving's convention: ``serving_default`` takes ``inputs``
alone (the trained rows, a fresh start); ``with_memory_size`` adds ``memory_size``, and a
stateful model's ``sequence`` takes all four inputs.

The LSTM baseline has no memory: its exports are the same without ``memory_size`` (a stateful
one takes ``inputs``, ``sequence_start`` and ``state``) and without ``attention``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ntm.contract.memory_plan import DEFAULT_MAX_MEMORY_SIZE, bucket_table
from ntm.contract.metadata import (ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES,
                                   ModelParts)
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.model.lstm_baseline import LSTMBaseline
from ntm.model.machine import NTM
from ntm.model.state import (pack_baseline_state, pack_state, state_rows, unpack_baseline_state,
                             unpack_state)

# Symbolic names of the variable axes, by input or output name.
DIM_NAMES = {INPUT_NAME: ["batch", "time", None], PROBABILITIES: ["batch", "time", None, None],
             ATTENTION: ["batch", "time", None, "rows"], MEMORY_SIZE_NAME: ["memory_sizes"],
             START_NAME: ["starts"], STATE_NAME: ["state_batch", "state_size"],
             STATE_OUT_NAME: ["batch", "state_out_size"]}
MEMORY_SIGNATURE = "with_memory_size"
SEQUENCE_SIGNATURE = "sequence"


class RowsTable:
    """The memory buckets and the longest input each holds, as graph constants: the rows an
    input of T time steps runs with when its caller leaves the choice to the model.

    Args:
        buckets: rows, ascending (``memory_plan.bucket_table``).
        longest: the most time steps each bucket holds.
    An input longer than the last bucket holds fails inside the graph, in a Gather named
    after the limit (onnxruntime's error names the node).
    """

    def __init__(self, buckets: list[int], longest: list[int]):
        self.buckets = buckets
        self.longest = longest

    @classmethod
    def for_task(cls, task, trained: int, maximum: int = DEFAULT_MAX_MEMORY_SIZE) -> "RowsTable":
        """The table of ``task`` (its ``memory_rows_for_time_steps``) for a model trained with
        ``trained`` rows, up to ``maximum`` rows."""
        return cls(*bucket_table(trained, task.memory_rows_for_time_steps,
                                 max(maximum, trained)))

    def rows_for_steps(self, time_steps: int) -> int:
        """``rows_for`` in Python: the rows an input of ``time_steps`` steps runs with."""
        return self.buckets[sum(time_steps > limit for limit in self.longest)]

    def rows_for(self, time_steps: tf.Tensor, chosen: tf.Tensor | None = None) -> tf.Tensor:
        """int32 [...] time steps -> int32 [...] rows (where ``chosen`` [...] bool is false,
        bucket 0 without looking at the limit: an input the caller gave rows for may be longer
        than the largest bucket holds)."""
        limits = tf.constant(self.longest, tf.int32)
        index = tf.reduce_sum(tf.cast(tf.expand_dims(time_steps, -1) > limits, tf.int32), axis=-1)
        if chosen is not None:
            index = tf.where(chosen, index, tf.zeros_like(index))
        return tf.gather(tf.constant(self.buckets, tf.int32), index,
                         name=f"input_needs_more_than_{self.buckets[-1]}_memory_rows")

    def resolve(self, memory_size: tf.Tensor, time_steps: tf.Tensor) -> tf.Tensor:
        """N for a call: max(memory_size) when positive, else ``rows_for(time_steps)``."""
        asked = tf.reduce_max(memory_size)
        return tf.where(asked > 0, asked, self.rows_for(time_steps, asked <= 0))


class ExportModule(tf.Module):
    """Wraps a trained network (the NTM, or the LSTM baseline) with one serving function.

    length None: ``serve(inputs [batch, time, in], memory_size [k])`` with a ``tf.while_loop``
                 over any time >= 1 and N = max(memory_size) rows (<= 0: ``rows``' choice).
    length T:    ``serve(inputs [batch, T, in])``, the loop unrolled T times (no Loop in ONNX),
                 N = ``memory_size`` rows [default: the trained N].
    Outputs: ``probabilities`` [batch, time, out] and ``attention`` [batch, time, heads, N]
    (each head's weighting per step, read heads first).

    The LSTM baseline has no memory (``ModelParts``): no ``memory_size`` input, no ``rows``
    table, no ``attention`` output; its dynamic ``serve`` takes ``inputs`` alone.
    """

    def __init__(self, model: NTM | LSTMBaseline, length: int | None = None,
                 memory_size: int | None = None, stateful: bool = False,
                 rows: RowsTable | None = None):
        super().__init__(name="ntm_export")
        self.parts = ModelParts.of(model.config.to_dict())
        if stateful and length is not None:
            raise ValueError("a stateful export has a dynamic length")
        if length is None and rows is None and self.parts.memory:
            raise ValueError("a dynamic export of the NTM needs its RowsTable")
        self.model = model
        self.length = length
        self.stateful = stateful
        self.rows = rows
        c = model.config
        # N of a fixed-length NTM (a dynamic one takes it per call)
        self.memory_size = (memory_size or c.memory_size) \
            if length is not None and self.parts.memory else None
        self.input_spec = tf.TensorSpec([None, length, c.input_size], tf.float32, name=INPUT_NAME)
        specs = {INPUT_NAME: self.input_spec,
                 MEMORY_SIZE_NAME: tf.TensorSpec([None], tf.int32, name=MEMORY_SIZE_NAME),
                 START_NAME: tf.TensorSpec([None], tf.int32, name=START_NAME),
                 STATE_NAME: tf.TensorSpec([None, None], tf.float32, name=STATE_NAME)}
        self.signature = [specs[name] for name in self.input_names]
        self.serve = tf.function(self._serve_function(), input_signature=self.signature)

    dim_names = DIM_NAMES

    @property
    def input_names(self) -> list[str]:
        """``serve``'s inputs in order: ``inputs``; ``memory_size`` (a dynamic NTM);
        ``sequence_start`` and ``state`` (stateful)."""
        names = [INPUT_NAME]
        if self.length is None and self.parts.memory:
            names.append(MEMORY_SIZE_NAME)
        return names + ([START_NAME, STATE_NAME] if self.stateful else [])

    def input_defaults(self) -> dict[str, np.ndarray]:
        """What a caller may leave out of the exported model: ``memory_size`` (the trained N, so
        ``inputs`` alone runs the model as trained) and, stateful, ``sequence_start`` and
        ``state`` (a caller that knows nothing of sequences starts afresh)."""
        defaults = {}
        if MEMORY_SIZE_NAME in self.input_names:
            defaults[MEMORY_SIZE_NAME] = np.array([self.model.config.memory_size], np.int32)
        if self.stateful:
            defaults[START_NAME] = np.array([1], np.int32)
            defaults[STATE_NAME] = np.zeros([1, 0], np.float32)
        return defaults

    # -- the serving functions, one per signature -------------------------------------------
    def _serve_function(self):
        if self.stateful:
            return self._serve_stateful if self.parts.memory else self._serve_stateful_baseline
        return self._serve_dynamic if MEMORY_SIZE_NAME in self.input_names else self._serve_inputs

    def _serve_dynamic(self, inputs, memory_size):
        n = self.rows.resolve(memory_size, tf.shape(inputs)[1])
        return self._outputs(self.model(inputs, memory_size=n))

    def _serve_inputs(self, inputs):
        """A fixed-length export (at its N), or a dynamic one of a network without memory."""
        memory = {"memory_size": self.memory_size} if self.parts.memory else {}
        return self._outputs(self.model(inputs, unroll=self.length is not None, **memory))

    def _serve_stateful(self, inputs, memory_size, sequence_start, state):
        n = self.rows.resolve(memory_size, tf.shape(inputs)[1])
        return self._go_on(inputs, sequence_start, state, n)

    def _serve_stateful_baseline(self, inputs, sequence_start, state):
        return self._go_on(inputs, sequence_start, state)

    # -- what differs between the networks ---------------------------------------------------
    def _outputs(self, out) -> dict[str, tf.Tensor]:
        """The probabilities, and the heads' attention where the network has memory."""
        outputs = {PROBABILITIES: tf.sigmoid(out.logits)}
        if self.parts.attention:
            outputs[ATTENTION] = out.weights
        return outputs

    def _go_on(self, inputs, sequence_start, state, rows=None):
        """One piece of a sequence: from the learned initial state (with ``rows`` memory rows)
        where ``sequence_start`` is set, else from the flat ``state`` a previous piece left."""
        batch = tf.shape(inputs)[0]
        flat = tf.cond(tf.reduce_max(sequence_start) > 0,
                       lambda: self._initial_flat_state(batch, rows), lambda: state)
        config = self.model.config
        if self.parts.memory:
            out = self.model.run_dynamic(inputs, memory_size=state_rows(flat, config),
                                         initial=unpack_state(flat, config))
            final = pack_state(out.state)
        else:
            out = self.model.run_dynamic(inputs, initial=unpack_baseline_state(flat, config))
            final = pack_baseline_state(out.state)
        return {**self._outputs(out), STATE_OUT_NAME: final}

    def _initial_flat_state(self, batch, rows):
        if self.parts.memory:
            return pack_state(self.model.cell.initial_state(batch, rows))
        return pack_baseline_state(self.model.initial_state(batch))

    # -- callers -----------------------------------------------------------------------------
    @property
    def full_signature(self) -> str:
        """The SavedModel signature that takes every input: ``sequence`` (stateful),
        ``with_memory_size`` (a dynamic NTM), else ``serving_default`` (``inputs`` alone)."""
        if self.stateful:
            return SEQUENCE_SIGNATURE
        return MEMORY_SIGNATURE if MEMORY_SIZE_NAME in self.input_names else "serving_default"

    def savedmodel_signatures(self) -> dict:
        """TF Serving's signatures: ``serving_default`` on ``inputs`` alone (trained rows, a
        fresh start), and the full one under its own name."""
        if self.full_signature == "serving_default":
            return {"serving_default": self.serve}

        @tf.function(input_signature=[self.input_spec])
        def default(inputs):
            return self.serve(*self.feeds(inputs))

        return {"serving_default": default, self.full_signature: self.serve}

    def named_feeds(self, inputs, memory_size: int | None = None, start: bool = True,
                    state: np.ndarray | None = None) -> dict:
        """``serve``'s arguments by name: ``inputs`` at N = ``memory_size`` rows [default: the
        trained N] where the module takes its rows per call; stateful, a start (``state``
        unread) or the next piece of a sequence from ``state``."""
        values = {INPUT_NAME: inputs, START_NAME: np.array([int(start)], np.int32),
                  STATE_NAME: np.zeros([1, 0], np.float32) if state is None else state}
        if MEMORY_SIZE_NAME in self.input_names:
            n = memory_size or self.model.config.memory_size
            values[MEMORY_SIZE_NAME] = np.array([n], np.int32)
        return {name: values[name] for name in self.input_names}

    def feeds(self, inputs, memory_size: int | None = None) -> list:
        """Positional arguments of ``serve`` for ``inputs`` from a fresh start (at N =
        ``memory_size`` rows for a dynamic NTM; a fixed module has its own N)."""
        return list(self.named_feeds(inputs, memory_size).values())
