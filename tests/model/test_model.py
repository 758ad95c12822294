"""The NTM over time: loops agree, outputs are finite and well-formed, gradients flow."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.model.machine import NTM  # noqa: E402


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_dynamic_and_unrolled_loops_agree(small_config, controller):
    config = dataclasses.replace(small_config, controller=controller)
    model = NTM(config, seed=3)
    x = np.random.default_rng(0).integers(0, 2, (3, 9, config.input_size)).astype(np.float32)
    dyn = model(tf.constant(x), return_memory=True)
    unr = model(tf.constant(x), unroll=True, return_memory=True)
    for a, b in zip(tf.nest.flatten(tuple(dyn)), tf.nest.flatten(tuple(unr))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)  # the final state too
    assert dyn.logits.shape == (3, 9, config.output_size)
    assert dyn.weights.shape == (3, 9, config.num_heads, config.memory_size)
    assert dyn.memory.shape == (3, 9, config.memory_size, config.memory_width)


def test_one_traced_graph_serves_every_length(small_config):
    model = NTM(small_config)
    fn = tf.function(lambda x: model(x).logits,
                     input_signature=[tf.TensorSpec([None, None, small_config.input_size])])
    for t in (1, 4, 33):
        assert fn(tf.zeros([2, t, small_config.input_size])).shape == (2, t, small_config.output_size)
    assert len(fn._list_all_concrete_functions()) == 1  # noqa: SLF001


def test_weightings_are_distributions_and_outputs_finite(small_config):
    model = NTM(small_config)
    x = np.random.default_rng(1).normal(size=(4, 20, small_config.input_size)).astype(np.float32)
    out = model(tf.constant(x) * 100.0)  # large inputs: saturate everything
    w = out.weights.numpy()
    assert np.isfinite(out.logits.numpy()).all() and np.isfinite(w).all()
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-4)
    assert np.abs(out.logits.numpy()).max() <= small_config.clip_value


def test_causal_right_padding_does_not_change_earlier_outputs(small_config):
    model = NTM(small_config)
    x = np.random.default_rng(2).normal(size=(2, 6, small_config.input_size)).astype(np.float32)
    padded = np.concatenate([x, np.zeros((2, 5, small_config.input_size), np.float32)], axis=1)
    np.testing.assert_allclose(model(tf.constant(x)).logits.numpy(),
                               model(tf.constant(padded)).logits.numpy()[:, :6], atol=1e-6)


def test_no_nan_with_zero_memory_and_finite_gradients(small_config):
    config = dataclasses.replace(small_config, memory_init=0.0)
    model = NTM(config)
    x = tf.zeros([2, 7, config.input_size])
    with tf.GradientTape() as tape:
        out = model(x)
        loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.ones_like(out.logits), logits=out.logits))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(loss.numpy())
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    # Every parameter gets a gradient (initial weight logits, read vectors, controller, heads).
    assert all(float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_gradient_matches_finite_difference(small_config):
    model = NTM(small_config, seed=5)
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 5, small_config.input_size)),
                    tf.float32)
    var = model.cell.head_bias

    def loss_fn():
        return tf.reduce_sum(tf.sin(model(x).logits))

    with tf.GradientTape() as tape:
        loss = loss_fn()
    grad = tape.gradient(loss, var).numpy()
    eps = 1e-2
    for i in (0, 3, 10):
        orig = var.numpy()
        delta = np.zeros_like(orig)
        delta[i] = eps
        var.assign(orig + delta)
        up = float(loss_fn())
        var.assign(orig - delta)
        down = float(loss_fn())
        var.assign(orig)
        assert (up - down) / (2 * eps) == pytest.approx(grad[i], rel=5e-2, abs=5e-3)


def test_paper_sized_model_has_about_62k_parameters():
    from ntm.model.config import ModelConfig
    model = NTM(ModelConfig())
    n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert 55_000 < n < 75_000  # the paper's LSTM-NTM: about 62k-70k


def test_a_learned_initial_memory_is_trained_and_carried_to_other_row_counts(small_config):
    config = dataclasses.replace(small_config, initial_memory="learned")
    model = NTM(config, seed=2)
    learned = model.cell.initial_memory
    assert learned.shape == (config.memory_size, config.memory_width)
    assert learned in model.trainable_variables
    assert NTM(small_config).cell.initial_memory is None  # constant: no such weight
    n0, batch = config.memory_size, tf.constant(3)
    start = model.cell.initial_state(batch).memory.numpy()
    assert np.array_equal(start, np.broadcast_to(learned.numpy(), start.shape))
    grown = model.cell.initial_state(batch, tf.constant(n0 + 5)).memory.numpy()
    assert np.array_equal(grown[:, :n0], start)
    np.testing.assert_allclose(grown[:, n0:], np.float32(config.memory_init))
    shrunk = model.cell.initial_state(batch, tf.constant(n0 - 2)).memory.numpy()
    assert np.array_equal(shrunk, start[:, :n0 - 2])
    x = np.random.default_rng(3).integers(0, 2, (2, 6, config.input_size)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.constant(x)).logits)
    gradient = tape.gradient(loss, learned)
    assert gradient is not None and float(tf.reduce_sum(tf.abs(gradient))) > 0
