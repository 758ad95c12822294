"""Compiled training and inference steps (``tf.function`` with a ``None`` batch and time axis,
so one trace serves every batch size and sequence length).

The steps are traced without AutoGraph: the loops and conditions are ``tf.while_loop`` and
``tf.cond`` already, and converting every function on the way cost ~2 s of each run's first
step (a part of the training time a user waits for).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from ntm.model.architectures import SequenceModel
from ntm.model.machine import NTM


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


def write_entropy(weights: tf.Tensor, write_heads: int) -> tf.Tensor:
    """Entropy of the write heads' weightings, summed over heads and time steps, averaged over
    sequences (nats/sequence): 0 for weightings on one row each, log N for uniform ones.

    weights: [batch, time, heads, N] (read heads first) -> scalar.
    """
    w = weights[:, :, -write_heads:]
    entropy = -tf.reduce_sum(w * tf.math.log(w + 1e-12), axis=-1)  # [batch, time, write_heads]
    return tf.reduce_mean(tf.reduce_sum(entropy, axis=[1, 2]))


def noisy_initial_state(model: NTM, memory_noise: tf.Tensor):
    """The learned initial state with ``memory_noise`` [batch, N, M] added to its memory.

    Training with noise (``TrainConfig.memory_noise``) puts arbitrary content in the rows a
    sequence never writes, so reading them is no longer free: the controller must learn to
    ignore, or not to make, reads of rows it did not write. Without it a read head may drift
    over the blank rows during the input, harmless in training and fatal once a longer input's
    writes reach it.
    """
    state = model.cell.initial_state(tf.shape(memory_noise)[0])
    return state._replace(memory=state.memory + memory_noise)


def loss_and_gradients(model: SequenceModel, variables, inputs: tf.Tensor, targets: tf.Tensor,
                       mask: tf.Tensor, entropy_weight: float | tf.Variable = 0.0,
                       memory_noise: tf.Tensor | None = None,
                       controller_noise: tf.Tensor | None = None) -> tuple:
    """Forward pass, loss and backward pass on one batch.

    inputs [batch, time, in], targets [batch, time, out], mask [batch, time]
    -> (loss [], bits/seq [], one gradient per variable). ``entropy_weight`` > 0 adds that many
    times the write heads' entropy (``write_entropy``) to the loss: a write spread over many
    rows costs, a focused one does not. A ``tf.Variable`` weight is read at every step (the
    polish phase switches it on); a Python 0 leaves the term out of the graph.
    ``memory_noise`` [batch, N, M] (N, M: the configured memory) is added to the initial memory
    (``noisy_initial_state``); None starts from the plain initial state.
    ``controller_noise`` [batch, time, units] is added to an LSTM controller's cell state after
    every step (``ntm.model.machine.add_to_cell_state``); a feedforward controller has no state, and
    the noise is ignored.
    A model without memory (the LSTM baseline) has none of the three: it has no write heads,
    memory or controller to take them, and they are ignored (``Run`` refuses a run that asks
    for them).
    """
    has_memory = model.config.has_memory
    if not has_memory or model.config.controller != "lstm":
        controller_noise = None
    if not has_memory:
        memory_noise, entropy_weight = None, 0.0
    with tf.GradientTape() as tape:
        if memory_noise is None and controller_noise is None:
            out = model(inputs)
        else:
            initial = None if memory_noise is None else noisy_initial_state(model, memory_noise)
            out = model.run_dynamic(inputs, initial=initial, controller_noise=controller_noise)
        loss = masked_loss(out.logits, targets, mask)
        if isinstance(entropy_weight, tf.Variable) or entropy_weight:
            loss += entropy_weight * write_entropy(out.weights, model.config.num_write_heads)
    grads = tape.gradient(loss, variables)
    return loss, bits_per_sequence(out.logits, targets, mask), grads


def clip_gradients(grads: list, loss: tf.Tensor, clip_value: float, clip_norm: float) -> tuple:
    """Clip every component to [-clip_value, clip_value], then the global norm to clip_norm.

    -> (clipped gradients, finite []): ``finite`` is False when the loss or a gradient is NaN/Inf.
    """
    grads = [tf.clip_by_value(g, -clip_value, clip_value) for g in grads]
    norm = tf.linalg.global_norm(grads)
    finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
    grads, _ = tf.clip_by_global_norm(grads, clip_norm, use_norm=norm)
    return grads, finite


def apply_if(finite: tf.Tensor, apply: Callable[[], None]) -> None:
    """Run ``apply`` (the optimiser update) only when ``finite``: bad values never reach the
    weights."""

    def update():
        apply()
        return tf.constant(True)

    tf.cond(finite, update, lambda: tf.constant(False))


def _batch_spec(model: SequenceModel, with_controller_noise: bool = False
                ) -> list[tf.TensorSpec]:
    """inputs [batch, time, in], targets [batch, time, out], mask [batch, time]; then, for a
    model with memory, the memory noise [batch, N, M] (zeros: the plain initial memory), and
    ``with_controller_noise`` the noise for the controller's cell state [batch, time, units]."""
    c = model.config
    spec = [tf.TensorSpec([None, None, c.input_size], tf.float32),
            tf.TensorSpec([None, None, c.output_size], tf.float32),
            tf.TensorSpec([None, None], tf.float32)]
    if c.has_memory:
        spec.append(tf.TensorSpec([None, c.memory_size, c.memory_width], tf.float32))
        if with_controller_noise:
            spec.append(tf.TensorSpec([None, None, c.controller_size], tf.float32))
    return spec


def _noises(model: SequenceModel, noise: tuple) -> tuple:
    """The step's tensors after the mask (``_batch_spec``) -> (memory noise or None,
    controller noise or None)."""
    if not model.config.has_memory:
        return None, None
    return noise[0], (noise[1] if len(noise) > 1 else None)


def make_train_step(model: SequenceModel, optimizer, clip_value: float, clip_norm: float,
                    entropy_weight: float | tf.Variable = 0.0,
                    with_controller_noise: bool = False) -> Callable:
    """A compiled step: forward, loss, gradients clipped (per component, then global norm),
    update. Returns (loss, bits/seq, finite); when the loss or any gradient is NaN/Inf the update
    is skipped and ``finite`` is False, so bad values never reach the weights.
    It takes (inputs, targets, mask) and, for a model with memory, the memory noise and,
    ``with_controller_noise``, the noise for the controller's cell state (``_batch_spec``)."""
    variables = model.trainable_variables

    @tf.function(input_signature=_batch_spec(model, with_controller_noise), autograph=False)
    def train_step(inputs, targets, mask, *noise):
        loss, bits, grads = loss_and_gradients(model, variables, inputs, targets, mask,
                                               entropy_weight, *_noises(model, noise))
        grads, finite = clip_gradients(grads, loss, clip_value, clip_norm)
        apply_if(finite, lambda: optimizer.apply(grads, variables))
        return loss, bits, finite

    return train_step


def replica_slice(x: tf.Tensor, replica_id: tf.Tensor, replicas: int) -> tf.Tensor:
    """This replica's share of a global batch: x [batch, ...] -> [batch / replicas, ...]
    (rows replica_id * share ... (replica_id + 1) * share - 1; batch divisible by replicas)."""
    share = tf.shape(x)[0] // replicas
    return x[replica_id * share:(replica_id + 1) * share]


def make_replicated_train_step(strategy: tf.distribute.Strategy, model: SequenceModel, optimizer,
                               clip_value: float, clip_norm: float,
                               entropy_weight: float | tf.Variable = 0.0,
                               with_controller_noise: bool = False) -> Callable:
    """The step of ``make_train_step`` over the replicas of a Mirrored or MultiWorkerMirrored
    strategy, equal to it on the same global batch (up to float rounding).

    Every replica (every worker, for multi-worker) is given the same global batch and computes
    loss and gradients on its own slice of it (batch / replicas sequences). The slices are equal
    in size, so the all-reduce mean of the replicas' means (their sums over the global batch
    size, summed) is the global batch's mean loss, bits/seq and gradient; every replica then
    clips the same values. The update then runs in cross-replica
    context through ``strategy.extended.update``, once per local device: in that update context
    every read or assign of a MirroredVariable (weights, optimiser slots, its step counter) goes
    to the device's own copy. (Updating from inside ``strategy.run`` instead would need a
    ``merge_call`` per assign, which TensorFlow refuses inside the ``tf.cond`` of the NaN guard.)

    The model and optimiser must have been created under ``strategy.scope()``.
    Returns (loss, bits/seq, finite) of the global batch.
    """
    variables = model.trainable_variables
    replicas = strategy.num_replicas_in_sync

    def replica_step(*batch):
        context = tf.distribute.get_replica_context()
        inputs, targets, mask, *noise = (
            replica_slice(x, context.replica_id_in_sync_group, replicas) for x in batch)
        loss, bits, grads = loss_and_gradients(model, variables, inputs, targets, mask,
                                               entropy_weight, *_noises(model, noise))
        loss, bits, *grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, [loss, bits, *grads])
        grads, finite = clip_gradients(grads, loss, clip_value, clip_norm)
        return loss, bits, finite, grads

    def first_replica(value):  # every replica holds the same reduced value
        return strategy.experimental_local_results(value)[0]

    @tf.function(input_signature=_batch_spec(model, with_controller_noise), autograph=False)
    def train_step(*batch):
        loss, bits, finite, grads = strategy.run(replica_step, args=batch)
        finite = first_replica(finite)
        # The optimiser's step counter only names the devices to update on.
        apply_if(finite, lambda: strategy.extended.update(
            optimizer.iterations, lambda _, device_grads: optimizer.apply(device_grads, variables),
            args=(grads,)))
        return first_replica(loss), first_replica(bits), finite

    return train_step


def make_predict(model: SequenceModel) -> Callable:
    """A compiled forward pass: inputs [batch, time, in] -> probabilities [batch, time, out]
    (an NTM at its configured memory rows)."""
    spec = [tf.TensorSpec([None, None, model.config.input_size], tf.float32)]

    @tf.function(input_signature=spec, autograph=False)
    def predict(inputs):
        return tf.sigmoid(model(inputs).logits)

    return predict


def make_predict_with_rows(model: NTM) -> Callable[[np.ndarray, int], np.ndarray]:
    """probabilities(inputs [batch, time, in], rows) -> [batch, time, out] (NumPy in and out),
    with ``rows`` memory rows; one compiled graph serves every length and memory size (an NTM:
    a model without memory has no rows to choose, ``make_predict``)."""
    spec = [tf.TensorSpec([None, None, model.config.input_size], tf.float32),
            tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=spec, autograph=False)
    def predict(inputs, memory_size):
        return tf.sigmoid(model(inputs, memory_size=memory_size).logits)

    return lambda x, rows: predict(tf.constant(x), tf.constant(rows, tf.int32)).numpy()
