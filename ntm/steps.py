"""Compiled training and inference steps (``tf.function`` with a ``None`` batch and time axis,
so one trace serves every batch size and sequence length)."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from ntm.model import NTM


def masked_loss(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy summed over scored bits, averaged over sequences (nats/sequence).

    logits, targets: [batch, time, out]; mask: [batch, time] -> scalar.
    """
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    per_sequence = tf.reduce_sum(tf.reduce_sum(ce, axis=-1) * mask, axis=-1)
    return tf.reduce_mean(per_sequence)


def bits_per_sequence(logits: tf.Tensor, targets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean count of wrongly thresholded scored bits per sequence (p > 0.5 <=> logit > 0)."""
    wrong = tf.cast(tf.not_equal(logits > 0.0, targets > 0.5), tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.reduce_sum(wrong, axis=-1) * mask, axis=-1))


def make_train_step(model: NTM, optimizer, clip_value: float, clip_norm: float) -> Callable:
    """A compiled step: forward, loss, gradients clipped (per component, then global norm),
    update. Returns (loss, bits/seq, finite); when the loss or any gradient is NaN/Inf the update
    is skipped and ``finite`` is False, so bad values never reach the weights."""
    c = model.config
    variables = model.trainable_variables
    spec = [tf.TensorSpec([None, None, c.input_size], tf.float32),
            tf.TensorSpec([None, None, c.output_size], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([], tf.bool)]

    @tf.function(input_signature=spec)
    def train_step(inputs, targets, mask, poison):
        with tf.GradientTape() as tape:
            logits = model(inputs).logits
            loss = masked_loss(logits, targets, mask)
            # ``poison`` injects a NaN on purpose: the test hook for the non-finite guard.
            loss = tf.where(poison, tf.constant(float("nan")), loss)
        grads = tape.gradient(loss, variables)
        grads = [tf.clip_by_value(g, -clip_value, clip_value) for g in grads]
        norm = tf.linalg.global_norm(grads)
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)

        def update():
            optimizer.apply(grads, variables)
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))
        return loss, bits_per_sequence(logits, targets, mask), finite

    return train_step


def make_predict(model: NTM) -> Callable:
    """A compiled forward pass: inputs [batch, time, in] -> (probabilities, weights)."""
    spec = [tf.TensorSpec([None, None, model.config.input_size], tf.float32)]

    @tf.function(input_signature=spec)
    def predict(inputs):
        out = model(inputs)
        return tf.sigmoid(out.logits), out.weights

    return predict
