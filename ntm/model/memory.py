"""Reading and writing the memory matrix (paper §3.1, §3.2).

Symbols (paper -> code):
    M_t   memory          [batch, N, M]
    w_t   weighting       [batch, heads, N]
    e_t   erase vector    [batch, write_heads, M]   (0..1)
    a_t   add vector      [batch, write_heads, M]
    r_t   read vector     [batch, read_heads, M]
"""

from __future__ import annotations

import tensorflow as tf


def read(weights: tf.Tensor, memory: tf.Tensor) -> tf.Tensor:
    """r_t = sum_i w_t(i) M_t(i) (paper eq. 2).

    weights: [batch, read_heads, N]; memory: [batch, N, M] -> [batch, read_heads, M].
    """
    return tf.linalg.matmul(weights, memory)


def erase_and_add(
    memory: tf.Tensor, weights: tf.Tensor, erase: tf.Tensor, add: tf.Tensor
) -> tf.Tensor:
    """M_t(i) = M_{t-1}(i) [1 - w_t(i) e_t] + w_t(i) a_t (paper eqs. 3-4).

    With several write heads the erasures multiply and the additions sum, as in §3.2.
    memory: [batch, N, M]; weights: [batch, write_heads, N]; erase, add: [batch, write_heads, M]
    -> [batch, N, M].
    """
    if weights.shape[1] == 1:
        # One write head (the paper's setting): two outer products, no reduction. (Rewriting it
        # as M + w (a - M e) saves one node but is slower in onnxruntime at large batches: its
        # broadcasts over the short M axis cost more than the two small matrix products.)
        w = tf.transpose(weights, [0, 2, 1])  # [batch, N, 1]
        return memory * (1.0 - tf.linalg.matmul(w, erase)) + tf.linalg.matmul(w, add)
    keep = tf.reduce_prod(1.0 - weights[:, :, :, None] * erase[:, :, None, :], axis=1)
    added = tf.einsum("bhn,bhm->bnm", weights, add)
    return memory * keep + added
