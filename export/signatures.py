"""The exported computation: inputs (and the memory size) -> (probabilities, attention).

Dynamic length: the number of memory rows N is chosen per call through a second input,
``memory_size`` (int32 [k], any k >= 1; the largest entry is used, so a batching server that
stacks one value per request, as Triton does, still works). Fixed length: the loop is unrolled
and N is fixed at export (``ntm export`` picks the N the length needs).

Stateful (``stateful=True``, dynamic length only): two more inputs and one more output carry a
sequence across calls (layout: ``ntm.contract.state_layout``)::

    sequence_start  int32 [k]       non-zero: start from the learned initial state with
                                    N = max(memory_size) rows; 0: go on from ``state``
    state           float32 [batch, S]   the state a previous call returned (ignored at a start)
    state_out       float32 [batch, S]   the state after this call's last step

Both new inputs have defaults (start 1, an empty state), so a caller that knows nothing of
sequences runs a stateful model exactly like a stateless one.
"""

from __future__ import annotations

import tensorflow as tf

from ntm.contract.metadata import ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.model import NTM
from ntm.sequence_state import pack_state, state_rows, unpack_state


class ExportModule(tf.Module):
    """Wraps a trained NTM with one serving function.

    length None: ``serve(inputs [batch, time, in], memory_size [k])`` with a ``tf.while_loop``
                 over any time >= 1 and N = max(memory_size) rows.
    length T:    ``serve(inputs [batch, T, in])``, the loop unrolled T times (no Loop in ONNX),
                 N = ``memory_size`` rows [default: the trained N].
    Outputs: ``probabilities`` [batch, time, out] and ``attention`` [batch, time, heads, N]
    (each head's weighting per step, read heads first).
    """

    def __init__(self, model: NTM, length: int | None = None, memory_size: int | None = None,
                 stateful: bool = False):
        super().__init__(name="ntm_export")
        if stateful and length is not None:
            raise ValueError("a stateful export has a dynamic length")
        self.model = model
        self.length = length
        self.stateful = stateful
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

    def _serve_dynamic(self, inputs, memory_size):
        out = self.model(inputs, memory_size=tf.reduce_max(memory_size))
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights}

    def _serve_stateful(self, inputs, memory_size, sequence_start, state):
        cell, config = self.model.cell, self.model.config

        def fresh():
            batch = tf.shape(inputs)[0]
            return pack_state(cell.initial_state(batch, tf.reduce_max(memory_size)))

        flat = tf.cond(tf.reduce_max(sequence_start) > 0, fresh, lambda: state)
        out = self.model.run_dynamic(inputs, memory_size=state_rows(flat, config),
                                     initial=unpack_state(flat, config))
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights,
                STATE_OUT_NAME: pack_state(out.state)}

    def _serve_fixed(self, inputs):
        out = self.model(inputs, unroll=True, memory_size=self.memory_size)
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights}

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
