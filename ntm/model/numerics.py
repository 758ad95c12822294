"""Small numeric helpers shared by the NTM layers (TensorFlow).

Everything here is epsilon-safe: memory rows may be exactly zero and weightings may hold zeros,
and none of these functions returns NaN or Inf for such inputs.
"""

from __future__ import annotations

import tensorflow as tf

EPSILON = 1e-6


def safe_norm(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """Euclidean norm along ``axis`` (the axis is dropped) with a gradient that stays finite
    at x = 0.

    sqrt(sum x^2 + eps^2): d/dx is x / norm, bounded by 1/eps even when x is all zeros.
    This is the norm of the cosine in ``ntm.model.addressing``, which computes the
    product of two of them as one square root (fewer ONNX nodes per step) instead of calling
    this. (There, as here, the epsilon goes on before a size-1 axis is inserted: onnxruntime
    adds it to a [batch, N] tensor far faster than to [batch, N, 1], as its broadcast loop
    runs per innermost span; docs/performance.md.)
    """
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=axis) + EPSILON * EPSILON)


def normalize_sum(x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    """x / sum(x) along ``axis``, for non-negative x; a tiny epsilon keeps the division finite."""
    return x / (tf.reduce_sum(x, axis=axis, keepdims=True) + EPSILON)
