"""The exported computation: inputs (and the memory size) -> (probabilities, attention).

Dynamic length: the number of memory rows N is chosen per call through a second input,
``memory_size`` (int32 [k], any k >= 1; the largest entry is used, so a batching server that
stacks one value per request, as Triton does, still works). Fixed length: the loop is unrolled
and N is fixed at export (``ntm export`` picks the N the length needs).
"""

from __future__ import annotations

import tensorflow as tf

from ntm.contract.metadata import ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES
from ntm.model import NTM


class ExportModule(tf.Module):
    """Wraps a trained NTM with one serving function.

    length None: ``serve(inputs [batch, time, in], memory_size [k])`` with a ``tf.while_loop``
                 over any time >= 1 and N = max(memory_size) rows.
    length T:    ``serve(inputs [batch, T, in])``, the loop unrolled T times (no Loop in ONNX),
                 N = ``memory_size`` rows [default: the trained N].
    Outputs: ``probabilities`` [batch, time, out] and ``attention`` [batch, time, heads, N]
    (each head's weighting per step, read heads first).
    """

    def __init__(self, model: NTM, length: int | None = None, memory_size: int | None = None):
        super().__init__(name="ntm_export")
        self.model = model
        self.length = length
        c = model.config
        self.input_spec = tf.TensorSpec([None, length, c.input_size], tf.float32, name=INPUT_NAME)
        if length is None:
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

    def _serve_fixed(self, inputs):
        out = self.model(inputs, unroll=True, memory_size=self.memory_size)
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights}

    def feeds(self, inputs, memory_size: int | None = None) -> list:
        """Positional arguments of ``serve`` for ``inputs`` (at N = ``memory_size`` rows for a
        dynamic module; a fixed module has its own N)."""
        if self.length is not None:
            return [inputs]
        n = memory_size or self.model.config.memory_size
        return [inputs, tf.constant([n], tf.int32)]
