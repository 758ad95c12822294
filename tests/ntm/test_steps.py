"""The training step's loss terms against NumPy references."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.config import ModelConfig  # noqa: E402
from ntm.model import NTM  # noqa: E402
from ntm.steps import loss_and_gradients, masked_loss, write_entropy  # noqa: E402


def test_write_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 2, 7)).astype(np.float32)  # 1 read + 1 write head
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -(w[:, :, 1:] * np.log(w[:, :, 1:] + 1e-12)).sum(axis=(1, 2, 3)).mean()
    assert abs(float(write_entropy(tf.constant(w), 1)) - expected) < 1e-4
    uniform = np.full((2, 4, 2, 16), 1 / 16, np.float32)
    assert abs(float(write_entropy(tf.constant(uniform), 1)) - 4 * np.log(16)) < 1e-4
    one_hot = np.zeros((2, 4, 2, 16), np.float32)
    one_hot[..., 3] = 1.0
    assert abs(float(write_entropy(tf.constant(one_hot), 1))) < 1e-6


def test_the_entropy_term_adds_to_the_loss_and_its_gradient():
    config = ModelConfig(input_size=5, output_size=4, memory_size=8, memory_width=4,
                         controller_size=8)
    model = NTM(config, seed=1)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.integers(0, 2, (2, 6, 5)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, (2, 6, 4)).astype(np.float32))
    mask = tf.ones([2, 6])
    variables = model.trainable_variables
    plain, _, g_plain = loss_and_gradients(model, variables, x, y, mask)
    weighted, _, g_weighted = loss_and_gradients(model, variables, x, y, mask, 0.5)
    out = model(x)
    expected = masked_loss(out.logits, y, mask) + 0.5 * write_entropy(out.weights, 1)
    assert abs(float(weighted) - float(expected)) < 1e-4 and float(weighted) > float(plain)
    kernel = [v.name for v in variables].index(model.cell.head_kernel.name)
    assert not np.allclose(g_plain[kernel].numpy(), g_weighted[kernel].numpy())
