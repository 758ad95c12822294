"""The LSTM baseline: the LSTM equations against NumPy, loops agree, gradients reach every
variable, and its config keeps the NTM's settings and its own apart."""

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.contract.fields import ConfigError  # noqa: E402
from ntm.model.architectures import build_model  # noqa: E402
from ntm.model.config import ModelConfig  # noqa: E402
from ntm.model.lstm_baseline import LSTMBaseline  # noqa: E402
from ntm.model.machine import NTM  # noqa: E402

# Batch, layers and units above 1 (and unequal) so broadcasting and wiring bugs show.
SMALL = ModelConfig(input_size=4, output_size=3, architecture="lstm", lstm_layers=2,
                    lstm_units=5, clip_value=20.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_baseline(model: LSTMBaseline, x: np.ndarray) -> tuple[np.ndarray, list]:
    """The stacked LSTM (module docstring's equations) in NumPy with ``model``'s weights:
    x [batch, time, in] -> logits [batch, time, out], final (h, c) per layer."""
    batch, time, _ = x.shape
    state = [(np.tile(layer.initial_h.numpy(), (batch, 1)),
              np.tile(layer.initial_c.numpy(), (batch, 1))) for layer in model.layers]
    tops = []
    for t in range(time):
        below = x[:, t]
        for index, layer in enumerate(model.layers):
            h, c = state[index]
            z = np.concatenate([below, h], axis=1) @ layer.kernel.numpy() + layer.bias.numpy()
            i, f, g, o = np.split(z, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            state[index] = (h, c)
            below = h
        tops.append(below)
    logits = np.stack(tops, axis=1) @ model.output_kernel.numpy() + model.output_bias.numpy()
    clip = model.config.clip_value
    return np.clip(logits, -clip, clip), state


def randomised(model: LSTMBaseline, seed: int = 0) -> LSTMBaseline:
    """Every variable set to random values (biases and initial states too, which start at
    zeros and ones), so the reference sees each of them at work."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype(np.float32))
    return model


def test_the_stack_matches_the_lstm_equations_in_numpy():
    model = randomised(LSTMBaseline(SMALL, seed=1))
    x = np.random.default_rng(2).normal(size=(3, 4, SMALL.input_size)).astype(np.float32)
    out = model(tf.constant(x))
    logits, state = numpy_baseline(model, x)
    np.testing.assert_allclose(out.logits.numpy(), logits, atol=1e-5)
    for (h, c), (want_h, want_c) in zip(out.state, state, strict=True):
        np.testing.assert_allclose(h.numpy(), want_h, atol=1e-5)
        np.testing.assert_allclose(c.numpy(), want_c, atol=1e-5)


def test_dynamic_and_unrolled_loops_agree_and_one_graph_serves_every_length():
    model = randomised(LSTMBaseline(SMALL, seed=3))
    x = tf.constant(np.random.default_rng(4).normal(size=(2, 6, SMALL.input_size)), tf.float32)
    dynamic, unrolled = model(x), model(x, unroll=True)
    for a, b in zip(tf.nest.flatten(tuple(dynamic)), tf.nest.flatten(tuple(unrolled))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    fn = tf.function(lambda x: model(x).logits,
                     input_signature=[tf.TensorSpec([None, None, SMALL.input_size])])
    for t in (1, 5, 17):
        assert fn(tf.zeros([2, t, SMALL.input_size])).shape == (2, t, SMALL.output_size)
    assert len(fn._list_all_concrete_functions()) == 1  # noqa: SLF001


def test_a_state_carries_a_sequence_on_and_right_padding_changes_nothing_before_it():
    model = randomised(LSTMBaseline(SMALL, seed=5))
    x = tf.constant(np.random.default_rng(6).normal(size=(2, 7, SMALL.input_size)), tf.float32)
    whole = model(x).logits.numpy()
    first = model.run_dynamic(x[:, :3])
    rest = model.run_dynamic(x[:, 3:], initial=first.state)
    np.testing.assert_allclose(np.concatenate([first.logits, rest.logits], axis=1), whole,
                               atol=1e-6)
    np.testing.assert_allclose(first.logits.numpy(), whole[:, :3], atol=1e-6)


def test_every_variable_gets_a_finite_nonzero_gradient():
    model = LSTMBaseline(SMALL, seed=7)
    x = tf.constant(np.random.default_rng(8).integers(0, 2, (3, 5, SMALL.input_size)),
                    tf.float32)
    with tf.GradientTape() as tape:
        logits = model(x).logits
        loss = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.ones_like(logits), logits=logits))
    grads = tape.gradient(loss, model.trainable_variables)
    # 2 layers x (kernel, bias, initial h, initial c) + the output layer's kernel and bias
    assert len(grads) == 4 * SMALL.lstm_layers + 2
    for variable, grad in zip(model.trainable_variables, grads):
        assert grad is not None, variable.name
        assert np.isfinite(grad.numpy()).all() and float(tf.reduce_sum(tf.abs(grad))) > 0, \
            variable.name


def test_logits_are_clipped_like_the_ntms():
    config = dataclasses.replace(SMALL, clip_value=0.5)
    model = randomised(LSTMBaseline(config, seed=9))
    model.output_kernel.assign(model.output_kernel * 100.0)
    logits = model(tf.ones([2, 3, config.input_size]) * 50.0).logits.numpy()
    assert np.isfinite(logits).all() and np.abs(logits).max() == pytest.approx(0.5)


def test_the_papers_copy_baseline_has_about_its_parameter_count():
    """Table 3: 3 x 256 for copy, 1,352,969 parameters; the plain stack (input to the first
    layer, the top layer to the output) with learned initial states has 1,326,600."""
    model = build_model(ModelConfig(architecture="lstm"))
    n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert n == 1_326_600
    assert abs(n - 1_352_969) / 1_352_969 < 0.02


def test_the_config_names_the_network_and_round_trips():
    config = dataclasses.replace(SMALL, lstm_units=7)
    again = ModelConfig.from_dict(config.to_dict())
    assert again == config and again.architecture == "lstm" and not again.has_memory
    assert isinstance(build_model(again), LSTMBaseline)
    assert isinstance(build_model(ModelConfig()), NTM)


def test_a_config_written_before_the_baseline_is_an_ntm():
    old = ModelConfig().to_dict()
    for name in ("architecture", "lstm_layers", "lstm_units"):
        del old[name]
    config = ModelConfig.from_dict(old)
    assert config.architecture == "ntm" and config.has_memory


@pytest.mark.parametrize("architecture, setting, value", [
    ("lstm", "memory_size", 64), ("lstm", "num_read_heads", 2), ("lstm", "controller_size", 50),
    ("ntm", "lstm_units", 128), ("ntm", "lstm_layers", 2)])
def test_a_setting_of_the_other_network_is_refused_by_name(architecture, setting, value):
    with pytest.raises(ConfigError, match=setting) as caught:
        ModelConfig(architecture=architecture, **{setting: value})
    assert caught.value.config_field == setting


def test_an_unknown_architecture_is_refused():
    with pytest.raises(ConfigError, match="architecture must be one of ntm, lstm"):
        ModelConfig(architecture="gru")
