"""Addressing and memory against a plain NumPy reference of paper §3 (loops, no tricks)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.model.addressing import (content_weights, cosine_similarity, interpolate,  # noqa: E402
                                  sharpen, shift, shift_indices)
from ntm.model.memory import erase_and_add, read  # noqa: E402

B, H, N, M = 3, 2, 7, 5
rng = np.random.default_rng(0)


def ref_content(key, beta, memory):
    out = np.zeros((B, H, N))
    for b in range(B):
        for h in range(H):
            sims = np.array([key[b, h] @ memory[b, i]
                             / (np.linalg.norm(key[b, h]) * np.linalg.norm(memory[b, i]) + 1e-12)
                             for i in range(N)])
            e = np.exp(beta[b, h] * sims - (beta[b, h] * sims).max())
            out[b, h] = e / e.sum()
    return out


def ref_shift(w, s, shift_range):
    out = np.zeros_like(w)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                for j in range(N):
                    offset = (i - j) % N  # s(i - j), index modulo N
                    if offset > N // 2:
                        offset -= N
                    if -shift_range <= offset <= shift_range:
                        out[b, h, i] += w[b, h, j] * s[b, h, offset + shift_range]
    return out


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_cosine_and_content_match_reference():
    key = rng.normal(size=(B, H, M)).astype(np.float32)
    memory = rng.normal(size=(B, N, M)).astype(np.float32)
    beta = rng.uniform(0, 10, size=(B, H)).astype(np.float32)
    got = content_weights(key, beta[..., None], memory).numpy()
    np.testing.assert_allclose(got, ref_content(key, beta, memory), atol=1e-5)
    cos = cosine_similarity(key, memory).numpy()
    assert np.all(np.abs(cos) <= 1 + 1e-6)


@pytest.mark.parametrize("shift_range", [1, 2])
def test_shift_matches_circular_convolution(shift_range):
    w = softmax(rng.normal(size=(B, H, N))).astype(np.float32)
    s = softmax(rng.normal(size=(B, H, 2 * shift_range + 1))).astype(np.float32)
    idx = tf.constant(shift_indices(N, shift_range))
    np.testing.assert_allclose(shift(w, s, idx).numpy(), ref_shift(w, s, shift_range), atol=1e-6)


def test_shift_moves_a_one_hot_weighting_around_the_ring():
    w = np.zeros((1, 1, N), np.float32)
    w[0, 0, N - 1] = 1.0
    s = np.array([[[0.0, 0.0, 1.0]]], np.float32)  # offset +1
    out = shift(w, s, tf.constant(shift_indices(N, 1))).numpy()
    assert out[0, 0, 0] == pytest.approx(1.0)  # wrapped from the last row to the first


def test_interpolate_and_sharpen():
    c = softmax(rng.normal(size=(B, H, N))).astype(np.float32)
    p = softmax(rng.normal(size=(B, H, N))).astype(np.float32)
    g = rng.uniform(size=(B, H)).astype(np.float32)
    np.testing.assert_allclose(interpolate(tf.constant(c), p, g[..., None]).numpy(),
                               g[..., None] * c + (1 - g[..., None]) * p, atol=1e-6)
    gamma = rng.uniform(1, 5, size=(B, H)).astype(np.float32)
    expect = c ** gamma[..., None]
    expect /= expect.sum(-1, keepdims=True)
    np.testing.assert_allclose(sharpen(c, gamma[..., None]).numpy(), expect, atol=1e-4)


def test_weightings_are_distributions_even_on_zero_memory():
    key = rng.normal(size=(B, H, M)).astype(np.float32)
    memory = np.zeros((B, N, M), np.float32)
    w = content_weights(key, np.full((B, H, 1), 50.0, np.float32), memory).numpy()
    assert np.isfinite(w).all()
    np.testing.assert_allclose(w.sum(-1), 1, atol=1e-5)
    zero = np.zeros((B, H, N), np.float32)
    sharp = sharpen(zero, np.full((B, H, 1), 20.0, np.float32)).numpy()
    assert np.isfinite(sharp).all() and (sharp >= 0).all()


def test_gradients_finite_on_zero_memory_and_zero_key():
    key = tf.Variable(np.zeros((B, H, M), np.float32))
    memory = tf.Variable(np.zeros((B, N, M), np.float32))
    with tf.GradientTape() as tape:
        w = content_weights(key, tf.ones((B, H, 1)) * 5, memory)
        w = sharpen(w, tf.ones((B, H, 1)) * 3)
        loss = tf.reduce_sum(w * tf.range(N, dtype=tf.float32))
    for g in tape.gradient(loss, [key, memory]):
        assert np.isfinite(g.numpy()).all()


def test_read_and_write_match_reference():
    memory = rng.normal(size=(B, N, M)).astype(np.float32)
    w = softmax(rng.normal(size=(B, H, N))).astype(np.float32)
    np.testing.assert_allclose(read(w, memory).numpy(), np.einsum("bhn,bnm->bhm", w, memory),
                               atol=1e-5)
    for heads in (1, 2):
        ww = w[:, :heads]
        e = rng.uniform(size=(B, heads, M)).astype(np.float32)
        a = rng.normal(size=(B, heads, M)).astype(np.float32)
        expect = memory.copy()
        for h in range(heads):  # erase with every head, then add with every head (§3.2)
            expect = expect * (1 - ww[:, h, :, None] * e[:, h, None, :])
        for h in range(heads):
            expect = expect + ww[:, h, :, None] * a[:, h, None, :]
        np.testing.assert_allclose(erase_and_add(memory, ww, e, a).numpy(), expect, atol=1e-5)
