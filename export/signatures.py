"""The exported computation: inputs -> (probabilities, attention), dynamic or fixed length."""

from __future__ import annotations

import tensorflow as tf

from export.metadata import ATTENTION, INPUT_NAME, PROBABILITIES
from ntm.model import NTM


class ExportModule(tf.Module):
    """Wraps a trained NTM with one serving function.

    length None: input [batch, time, in] with a ``tf.while_loop`` over any time >= 1.
    length N:    input [batch, N, in], the loop unrolled N times (no Loop in ONNX).
    Outputs: ``probabilities`` [batch, time, out] and ``attention`` [batch, time, heads, N]
    (each head's weighting per step, read heads first).
    """

    def __init__(self, model: NTM, length: int | None = None):
        super().__init__(name="ntm_export")
        self.model = model
        self.length = length
        c = model.config
        self.input_spec = tf.TensorSpec([None, length, c.input_size], tf.float32, name=INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[self.input_spec])

    def _serve(self, inputs):
        out = self.model(inputs, unroll=self.length is not None)
        return {PROBABILITIES: tf.sigmoid(out.logits), ATTENTION: out.weights}
