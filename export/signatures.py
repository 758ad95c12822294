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
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ntm.contract.memory_plan import DEFAULT_MAX_MEMORY_SIZE, bucket_table
from ntm.contract.metadata import ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.model.machine import NTM
from ntm.model.state import pack_state, state_rows, unpack_state

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
    """Wraps a trained NTM with one serving function.

    length None: ``serve(inputs [batch, time, in], memory_size [k])`` with a ``tf.while_loop``
                 over any time >= 1 and N = max(memory_size) rows (<= 0: ``rows``' choice).
    length T:    ``serve(inputs [batch, T, in])``, the loop unrolled T times (no Loop in ONNX),
                 N = ``memory_size`` rows [default: the trained N].
    Outputs: ``probabilities`` [batch, time, out] and ``attention`` [batch, time, heads, N]
    (each head's weighting per step, read heads first).
    """

    def __init__(self, model: NTM, length: int | None = None, memory_size: int | None = None,
                 stateful: bool = False, rows: RowsTable | None = None):
        super().__init__(name="ntm_export")
        if stateful and length is not None:
            raise ValueError("a stateful export has a dynamic length")
        if length is None and rows is None:
            raise ValueError("a dynamic export needs its RowsTable")
        self.model = model
        self.length = length
        self.stateful = stateful
        self.rows = rows
        c = model.config
        self.input_spec = tf.TensorSpec([None, length, c.input_size], tf.float32, name=INPUT_NAME)
        if stateful:
            self.memory_size = None
            self.signature = [self.input_spec,
                              tf.TensorSpec([None], tf.int32, name=MEMORY_SIZE_NAME),
                              tf.TensorSpec([None], tf.int32, name=START_NAME),
                              tf.TensorSpec([None, None], tf.float32, name=STATE_NAME)]
            self.serve = tf.function(self._serve_stateful, input_signature=self.signature)
        elif length is None:
            self.memory_size = None
            self.memory_spec = tf.TensorSpec([None], tf.int32, name=MEMORY_SIZE_NAME)
            self.signature = [self.input_spec, self.memory_spec]
            self.serve = tf.function(self._serve_dynamic, input_signature=self.signature)
        else:
            self.memory_size = memory_size or c.memory_size
            self.signature = [self.input_spec]
            self.serve = tf.function(self._serve_fixed, input_signature=self.signature)

    dim_names = DIM_NAMES

    def input_defaults(self) -> dict[str, np.ndarray]:
        """What a caller may leave out of the exported model: ``memory_size`` (the trained N, so
        ``inputs`` alone runs the model as trained) and, stateful, ``sequence_start`` and
        ``state`` (a caller that knows nothing of sequences starts afresh)."""
        defaults = {}
        if self.length is None:
            defaults[MEMORY_SIZE_NAME] = np.array([self.model.config.memory_size], np.int32)
        if self.stateful:
            defaults[START_NAME] = np.array([1], np.int32)
            defaults[STATE_NAME] = np.zeros([1, 0], np.float32)
        return defaults

    def _serve_dynamic(self, inputs, memory_size):
        n = self.rows.resolve(memory_size, tf.shape(inputs)[1])
        out = self.model(inputs, memory_size=n)
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights}

    def _serve_stateful(self, inputs, memory_size, sequence_start, state):
        cell, config = self.model.cell, self.model.config
        batch = tf.shape(inputs)[0]
        n = self.rows.resolve(memory_size, tf.shape(inputs)[1])

        def fresh():
            return pack_state(cell.initial_state(batch, n))

        flat = tf.cond(tf.reduce_max(sequence_start) > 0, fresh, lambda: state)
        out = self.model.run_dynamic(inputs, memory_size=state_rows(flat, config),
                                     initial=unpack_state(flat, config))
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights,
                STATE_OUT_NAME: pack_state(out.state)}

    def _serve_fixed(self, inputs):
        out = self.model(inputs, unroll=True, memory_size=self.memory_size)
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights}

    def savedmodel_signatures(self) -> dict:
        """TF Serving's signatures: ``serving_default`` on ``inputs`` alone (trained rows, a
        fresh start), and the full ones under their own names."""
        if self.length is not None:
            return {"serving_default": self.serve}
        trained = self.model.config.memory_size
        spec = self.input_spec

        @tf.function(input_signature=[spec])
        def default(inputs):
            feeds = [inputs, tf.constant([trained], tf.int32)]
            if self.stateful:
                feeds += [tf.constant([1], tf.int32),
                          tf.zeros([1, 0], tf.float32)]
            return self.serve(*feeds)

        full = {SEQUENCE_SIGNATURE if self.stateful else MEMORY_SIGNATURE: self.serve}
        return {"serving_default": default, **full}

    def feeds(self, inputs, memory_size: int | None = None) -> list:
        """Positional arguments of ``serve`` for ``inputs`` (at N = ``memory_size`` rows for a
        dynamic module; a fixed module has its own N)."""
        if self.length is not None:
            return [inputs]
        n = memory_size or self.model.config.memory_size
        if self.stateful:  # a fresh start: the state input is not read
            return [inputs, tf.constant([n], tf.int32), tf.constant([1], tf.int32),
                    tf.zeros([1, 0])]
        return [inputs, tf.constant([n], tf.int32)]
