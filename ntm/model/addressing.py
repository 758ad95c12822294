"""Addressing mechanisms of the NTM (paper §3.3), one function per equation.

All heads (read and write) are processed together along a ``heads`` axis, so one set of
operations serves every head; that keeps the per-time-step graph small, which is what decides
speed in TensorFlow's loop and in onnxruntime. For the same reason the per-head scalars keep a
trailing axis of size 1 (``[batch, heads, 1]``): they broadcast against ``[batch, heads, N]``
without the squeeze/expand pairs that cost two ONNX nodes each.

Symbols (paper -> code):
    M_t        memory                [batch, N, M]
    k_t        key                   [batch, heads, M]
    beta_t     strength (>= 0)       [batch, heads, 1]
    g_t        gate (0..1)           [batch, heads, 1]
    s_t        shift distribution    [batch, heads, S]   S = 2 * shift_range + 1, offsets -R..R
    gamma_t    sharpening (>= 1)     [batch, heads, 1]
    w_t        weighting             [batch, heads, N]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ntm.model.numerics import EPSILON, normalize_sum


def cosine_similarity(key: tf.Tensor, memory: tf.Tensor) -> tf.Tensor:
    """K[k, M(i)] = k . M(i) / (|k| |M(i)|) (paper eq. 6), epsilon-safe for zero rows.

    key: [batch, heads, M]; memory: [batch, N, M] -> [batch, heads, N].
    The norms are ``safe_norm``'s, sqrt(|x|^2 + eps^2), taken as one square root of their
    product: sqrt((|k|^2 + eps^2)(|M(i)|^2 + eps^2)), the same value to a float32 rounding:
    the denominator then costs fewer ONNX nodes per step (``ntm.export.onnx_rewrite``
    makes each square-and-sum one ReduceSumSquare). The key's sum keeps its axis; the memory's
    runs along the last axis (onnxruntime reduces a middle axis far more slowly) and gets its
    size-1 axis after the epsilon (see ``safe_norm``). Figures: docs/performance.md.
    """
    dot = tf.linalg.matmul(key, memory, transpose_b=True)  # [batch, heads, N]
    key_sq = tf.reduce_sum(tf.square(key), axis=2, keepdims=True) + EPSILON * EPSILON
    memory_sq = tf.reduce_sum(tf.square(memory), axis=2) + EPSILON * EPSILON  # [batch, N]
    # [batch, heads, 1] x [batch, 1, N]. The epsilon is part of the trained models'
    # arithmetic: near-empty rows (1e-6 each at the start) get a damped similarity. Keep it
    # exactly so, or old checkpoints change behaviour.
    return dot / (tf.sqrt(key_sq * tf.expand_dims(memory_sq, 1)) + EPSILON)


def content_weights(key: tf.Tensor, strength: tf.Tensor, memory: tf.Tensor) -> tf.Tensor:
    """w^c_t(i) = softmax_i(beta_t K[k_t, M_t(i)]) (paper eq. 5).

    key: [batch, heads, M]; strength: [batch, heads, 1]; memory: [batch, N, M]
    -> [batch, heads, N].
    """
    return tf.nn.softmax(strength * cosine_similarity(key, memory), axis=-1)


def interpolate(content: tf.Tensor, previous: tf.Tensor, gate: tf.Tensor) -> tf.Tensor:
    """w^g_t = g_t w^c_t + (1 - g_t) w_{t-1} (paper eq. 7).

    content, previous: [batch, heads, N]; gate: [batch, heads, 1] -> [batch, heads, N].
    Written as w_{t-1} + g_t (w^c_t - w_{t-1}): the same value in three operations, not four.
    """
    return previous + gate * (content - previous)


def shift_indices(memory_size: int, shift_range: int) -> np.ndarray:
    """Index table for the circular convolution: idx[j, i] = (i - offset_j) mod N.

    Offsets run -shift_range..+shift_range, so row j holds offset j - shift_range.
    Returns int32 [S, N]. A gather with this table replaces tf.roll (whose ONNX conversion was
    once reported wrong) and costs one op for every shift at once.
    """
    offsets = np.arange(-shift_range, shift_range + 1)
    rows = np.arange(memory_size)[None, :]
    return ((rows - offsets[:, None]) % memory_size).astype(np.int32)


def shift_indices_tensor(memory_size: tf.Tensor, shift_range: int) -> tf.Tensor:
    """``shift_indices`` for a number of rows known only when the graph runs.

    memory_size: int32 scalar tensor (N) -> int32 [S, N]. Built once per sequence, outside the
    time loop (the loop body only gathers with it), so the circular shift wraps at the N that
    this call uses.
    """
    offsets = tf.range(-shift_range, shift_range + 1, dtype=tf.int32)[:, None]  # [S, 1]
    rows = tf.range(memory_size, dtype=tf.int32)[None, :]  # [1, N]
    return tf.math.floormod(rows - offsets, memory_size)


def shift(weights: tf.Tensor, shift_weights: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Circular convolution w~_t(i) = sum_j w^g_t(j) s_t(i - j), indices modulo N (paper eq. 8).

    weights: [batch, heads, N]; shift_weights: [batch, heads, S]; indices: [S, N] from
    ``shift_indices`` -> [batch, heads, N].

    Laid out for onnxruntime, where the layout decides the cost: the gather runs along the
    leading axis of an [N, batch, heads] view, so it copies whole rows (along the last axis it
    copies element by element), and the sum over the S shifts runs along the leading axis too
    (over a middle axis it is slow even at batch 1). Figures: docs/performance.md.
    """
    rows = tf.transpose(weights, [2, 0, 1])  # [N, batch, heads]
    shifted = tf.gather(rows, indices)  # [S, N, batch, heads]: w(i - offset_j)
    kernel = tf.expand_dims(tf.transpose(shift_weights, [2, 0, 1]), 1)  # [S, 1, batch, heads]
    return tf.transpose(tf.reduce_sum(shifted * kernel, axis=0), [1, 2, 0])


def sharpen(weights: tf.Tensor, gamma: tf.Tensor) -> tf.Tensor:
    """w_t(i) = w~_t(i)^gamma_t / sum_j w~_t(j)^gamma_t (paper eq. 9), epsilon-safe.

    weights: [batch, heads, N] (non-negative); gamma: [batch, heads, 1] (>= 1)
    -> [batch, heads, N].
    The power is taken as exp(gamma log(w + eps)) so a zero weight never meets log(0). (A Pow
    node instead is one ONNX node fewer but measured no faster at batch 1 and slower at 64.
    A softmax of gamma log(w + eps) would be 3 nodes fewer, but it drops the epsilon of the
    sum, and the trained models depend on it (the bundled copy model's outputs moved far past
    the export tolerance), so it is not used.)
    """
    return normalize_sum(tf.exp(gamma * tf.math.log(weights + EPSILON)))


def address(
    key: tf.Tensor,
    strength: tf.Tensor,
    gate: tf.Tensor,
    shift_weights: tf.Tensor,
    gamma: tf.Tensor,
    previous: tf.Tensor,
    memory: tf.Tensor,
    indices: tf.Tensor,
) -> tf.Tensor:
    """The full §3.3 pipeline: content -> interpolation -> shift -> sharpening.

    Shapes as in the module docstring; returns w_t [batch, heads, N].
    """
    content = content_weights(key, strength, memory)
    gated = interpolate(content, previous, gate)
    shifted = shift(gated, shift_weights, indices)
    return sharpen(shifted, gamma)
