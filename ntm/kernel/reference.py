"""The NTM of a fused model, computed in NumPy float64: the reference both float32 engines are
measured against.

Two correct float32 implementations of a long recurrence differ where it amplifies rounding
(a sharpened weighting near a tie between two rows moves by far more than the rounding that
tipped it). Against each other, the fused kernel and the standard ONNX model then show the sum
of both engines' errors; against this float64 computation, each engine shows its own.

The arithmetic is ``ntm.model.cell`` step for step (paper §3, one function per equation below),
read from a fused model's initializers and attributes (``ntm.export.fused``), so it needs no
TensorFlow. Shapes: B batch, T time steps, I inputs, O outputs, U controller units, H heads
(read heads first), R read heads, W write heads, N memory rows, M memory width, S shifts.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

EPSILON = 1e-6  # ntm.model.numerics.EPSILON


class FusedModel(NamedTuple):
    """A fused model's weights (float64, the op's input names) and attributes."""

    weights: dict[str, np.ndarray]
    attributes: dict


def read_fused_model(path: str | Path) -> FusedModel:
    """The weights and attributes of the one ``ai.ntm`` node of a fused ONNX model."""
    import onnx
    from onnx import helper, numpy_helper

    from ntm.contract.kernel_library import DOMAIN
    from ntm.export.fused import WEIGHT_NAMES

    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.domain == DOMAIN]
    if len(nodes) != 1:
        raise ValueError(f"{path} is not a fused NTM model (it has {len(nodes)} {DOMAIN} nodes)")
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # A model written before initial_memory existed has no such input: its memory is constant.
    weights = {name: constants.get(name, np.zeros([0], np.float32)).astype(np.float64)
               for name in WEIGHT_NAMES}
    attributes = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    return FusedModel(weights, attributes)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def initial_weights(logits: np.ndarray, rows: int, margin: float) -> np.ndarray:
    """softmax of the learned logits [H, N0] extended to N rows (``extend_initial_logits``)
    -> [H, N]."""
    trained = logits.shape[1]
    floor = logits.min(axis=1, keepdims=True) - margin
    extended = np.concatenate([logits, np.repeat(floor, max(rows - trained, 0), axis=1)], 1)
    return softmax(extended[:, :rows])


def initial_memory(learned: np.ndarray, rows: int, width: int, value: float) -> np.ndarray:
    """M_0 for N rows (``NTMCell.initial_memory_rows``): the learned rows [N0, M] (none: a
    constant memory), then rows of the constant ``value`` -> [N, M]."""
    learned = learned.reshape(-1, width)[:rows]
    constant = np.full((rows - len(learned), width), np.float64(np.float32(value)))
    return np.concatenate([learned, constant])


def content_weights(key: np.ndarray, strength: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """Eqs. 5-6: softmax_i(beta K[k, M(i)]), the model's epsilons.
    key [B, H, M], strength [B, H], memory [B, N, M] -> [B, H, N]."""
    dot = np.einsum("bhm,bnm->bhn", key, memory)
    key_sq = (key * key).sum(-1, keepdims=True) + EPSILON ** 2
    memory_sq = (memory * memory).sum(-1)[:, None, :] + EPSILON ** 2
    cosine = dot / (np.sqrt(key_sq * memory_sq) + EPSILON)
    return softmax(strength[..., None] * cosine)


def interpolate(content: np.ndarray, previous: np.ndarray, gate: np.ndarray) -> np.ndarray:
    """Eq. 7. content, previous [B, H, N]; gate [B, H] -> [B, H, N]."""
    return previous + gate[..., None] * (content - previous)


def shift(weights: np.ndarray, shifts: np.ndarray, shift_range: int) -> np.ndarray:
    """Eq. 8, circular: w~(i) = sum_j w(i - offset_j) s_j, offsets -R..R.
    weights [B, H, N]; shifts [B, H, S] -> [B, H, N]."""
    out = np.zeros_like(weights)
    for j, offset in enumerate(range(-shift_range, shift_range + 1)):
        out += np.roll(weights, offset, axis=-1) * shifts[..., j:j + 1]
    return out


def sharpen(weights: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Eq. 9 as the model takes it: exp(gamma log(w + eps)), normalised with an epsilon."""
    powered = np.exp(gamma[..., None] * np.log(weights + EPSILON))
    return powered / (powered.sum(-1, keepdims=True) + EPSILON)


def erase_and_add(memory: np.ndarray, write: np.ndarray, erase: np.ndarray,
                  add: np.ndarray) -> np.ndarray:
    """Eqs. 3-4, several write heads on M_{t-1}: erasures multiply, additions sum.
    memory [B, N, M]; write [B, W, N]; erase, add [B, W, M] -> [B, N, M]."""
    keep = np.prod(1.0 - write[..., None] * erase[:, :, None, :], axis=1)
    added = np.einsum("bwn,bwm->bnm", write, add)
    return memory * keep + added


def forward(model: FusedModel, inputs: np.ndarray, rows: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """inputs [B, T, I] from a fresh start with N = ``rows`` -> (probabilities [B, T, O],
    attention [B, T, H, N]), float64."""
    w, a = model.weights, model.attributes
    m, shift_range = a["memory_width"], a["shift_range"]
    read_heads, write_heads = a["read_heads"], a["write_heads"]
    heads, s = read_heads + write_heads, 2 * a["shift_range"] + 1
    per_head = m + 3 + s
    lstm, clip = bool(a["lstm"]), a["clip_value"]
    x = np.asarray(inputs, np.float64)
    batch, time, _ = x.shape
    trained = w["initial_weight_logits"].shape[1]
    scale = 1.0 if rows == trained else (np.log(rows) / np.log(trained)) ** a["grow_strength_power"]

    h = np.tile(w["initial_h"], (batch, 1))
    cell = np.tile(w["initial_c"], (batch, 1))
    reads = np.tile(w["initial_reads"][None], (batch, 1, 1))  # [B, R, M]
    weights = np.tile(initial_weights(w["initial_weight_logits"], rows,
                                      a["grow_logit_margin"])[None], (batch, 1, 1))
    memory = np.tile(initial_memory(w["initial_memory"], rows, m, a["memory_init"])[None],
                     (batch, 1, 1))
    probabilities = np.zeros((batch, time, w["output_bias"].shape[0]))
    attention = np.zeros((batch, time, heads, rows))
    for t in range(time):
        controller_in = np.concatenate([x[:, t], reads.reshape(batch, -1)]
                                       + ([h] if lstm else []), axis=1)
        z = controller_in @ w["controller_kernel"] + w["controller_bias"]
        if lstm:
            i, f, g, o = np.split(z, 4, axis=1)
            cell = sigmoid(f) * cell + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(cell)
        else:
            h = np.tanh(z)
        p = np.clip(h @ w["head_kernel"] + w["head_bias"], -clip, clip)
        per = p[:, :heads * per_head].reshape(batch, heads, per_head)
        write = p[:, heads * per_head:].reshape(batch, write_heads, 2 * m)
        key = per[..., :m]
        strength = softplus(per[..., m]) * scale
        gate = sigmoid(per[..., m + 1])
        shifts = softmax(per[..., m + 2:m + 2 + s])
        gamma = 1.0 + softplus(per[..., m + 2 + s])
        content = content_weights(key, strength, memory)
        weights = sharpen(shift(interpolate(content, weights, gate), shifts, shift_range), gamma)
        reads = np.einsum("brn,bnm->brm", weights[:, :read_heads], memory)
        memory = erase_and_add(memory, weights[:, read_heads:], sigmoid(write[..., :m]),
                               np.tanh(write[..., m:]))
        logits = np.concatenate([h, reads.reshape(batch, -1)], 1) @ w["output_kernel"]
        probabilities[:, t] = sigmoid(np.clip(logits + w["output_bias"], -clip, clip))
        attention[:, t] = weights
    return probabilities, attention
