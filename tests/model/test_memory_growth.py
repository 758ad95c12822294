"""Memory that grows: the same weights run with more rows than they were trained with."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.model.addressing import shift_indices, shift_indices_tensor  # noqa: E402
import ntm.model.cell  # noqa: E402
from ntm.model.cell import extend_initial_logits, strength_scale  # noqa: E402
from ntm.model.machine import NTM  # noqa: E402


@pytest.mark.parametrize("n", [3, 16, 37, 128])
def test_shift_table_built_in_the_graph_equals_the_numpy_one(n):
    for shift_range in (1, 2):
        if 2 * shift_range + 1 <= n:
            np.testing.assert_array_equal(shift_indices_tensor(tf.constant(n), shift_range),
                                          shift_indices(n, shift_range))


def test_initial_logits_keep_the_trained_rows_and_pad_below_each_heads_minimum():
    logits = tf.constant([[5.0, -1.0, 0.5, 0.0], [0.0, 2.0, -3.0, 1.0]])
    assert extend_initial_logits(logits, 4) is logits
    for n in (6, tf.constant(6)):
        out = extend_initial_logits(logits, n).numpy()
        np.testing.assert_array_equal(out[:, :4], logits.numpy())
        np.testing.assert_allclose(out[:, 4:], [[-1.0 - 30.0] * 2,
                                                [-3.0 - 30.0] * 2])
    np.testing.assert_array_equal(extend_initial_logits(logits, tf.constant(3)), logits[:, :3])
    # The trained rows keep their initial weighting: the added rows take ~e^-30 of it.
    grown = tf.nn.softmax(extend_initial_logits(logits, 1024)).numpy()
    np.testing.assert_allclose(grown[:, :4], tf.nn.softmax(logits).numpy(), atol=1e-9)


def test_strength_scale_is_one_at_the_trained_rows_and_grows_with_log_rows():
    assert strength_scale(128, 128) is None
    assert float(strength_scale(tf.constant(128), 128)) == 1.0  # exactly: parity at N0
    np.testing.assert_allclose(float(strength_scale(1024, 128)), (10 / 7) ** 2, rtol=1e-6)
    np.testing.assert_allclose(float(strength_scale(tf.constant(512), 128, power=1.0)), 9 / 7,
                               rtol=1e-6)


def test_a_grown_model_equals_a_model_built_with_that_many_rows(small_config, monkeypatch):
    """Running with memory_size=N is a model configured with N rows whose initial logits were
    extended by the rule and whose key strengths are scaled by strength_scale(N): nothing else
    depends on N."""
    model = NTM(small_config, seed=4)
    big = NTM(dataclasses.replace(small_config, memory_size=40), seed=4)
    for source, target in zip(model.trainable_variables, big.trainable_variables):
        if source.shape == target.shape:
            target.assign(source)
    big.cell.initial_weight_logits.assign(
        extend_initial_logits(model.cell.initial_weight_logits, 40))
    x = np.random.default_rng(5).integers(0, 2, (3, 90, small_config.input_size))
    x = tf.constant(x.astype(np.float32))  # 90 steps: the shift wraps around 40 rows twice
    grown = [model(x, memory_size=n) for n in (40, tf.constant(40))]
    unrolled = model(x, unroll=True, memory_size=40)
    # The big model is at its own trained size (no scale): give it the grown model's scale.
    scale = strength_scale(40, small_config.memory_size, small_config.grow_strength_power)
    monkeypatch.setattr(ntm.model.cell, "strength_scale", lambda *_: scale)
    expected = big(x)
    for out in grown + [unrolled]:
        np.testing.assert_allclose(out.logits, expected.logits, atol=1e-5)
        np.testing.assert_allclose(out.weights, expected.weights, atol=1e-5)


def test_one_traced_graph_serves_every_memory_size(small_config):
    model = NTM(small_config)
    spec = [tf.TensorSpec([None, None, small_config.input_size]), tf.TensorSpec([], tf.int32)]
    fn = tf.function(lambda x, n: model(x, memory_size=n).weights, input_signature=spec)
    for n in (16, 32, 100):
        w = fn(tf.zeros([2, 5, small_config.input_size]), tf.constant(n)).numpy()
        assert w.shape == (2, 5, small_config.num_heads, n)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-4)
    assert len(fn._list_all_concrete_functions()) == 1  # noqa: SLF001
