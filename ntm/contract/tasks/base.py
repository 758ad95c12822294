"""What every task provides, and the pieces they share (NumPy only: no TensorFlow here).

A task owns its batch generator, its loss mask, its bit-error metric, an encoder from a plain
request to model input, a decoder from model output back to the answer, and an ASCII rendering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ntm.contract.errors import NtmError


class InvalidRequest(ValueError, NtmError):
    """A request does not fit the task; ``field`` names the offending part of the request."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Batch:
    """A batch of padded sequences.

    inputs:  float32 [batch, time, input_size]
    targets: float32 [batch, time, output_size]
    mask:    float32 [batch, time]   1 where the output is scored, 0 elsewhere (and in padding)
    lengths: int64   [batch]         time steps of each sequence before right-padding
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])


def stack_sequences(
    inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> Batch:
    """Right-pad per-sequence arrays ([time, width] / [time]) to one Batch."""
    lengths = np.array([x.shape[0] for x in inputs], dtype=np.int64)
    time_steps = int(lengths.max())
    n = len(inputs)
    x = np.zeros((n, time_steps, inputs[0].shape[1]), np.float32)
    y = np.zeros((n, time_steps, targets[0].shape[1]), np.float32)
    m = np.zeros((n, time_steps), np.float32)
    for i, (xi, yi, mi) in enumerate(zip(inputs, targets, masks)):
        x[i, : len(xi)] = xi
        y[i, : len(yi)] = yi
        m[i, : len(mi)] = mi
    return Batch(x, y, m, lengths)


def bit_errors(probabilities: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Wrongly thresholded output bits per sequence (the paper's error measure).

    probabilities, targets: [batch, time, width]; mask: [batch, time] -> float64 [batch].
    A bit counts as 1 when its probability is > 0.5.
    """
    wrong = (probabilities > 0.5) != (targets > 0.5)
    return (wrong.sum(axis=-1) * mask).sum(axis=-1).astype(np.float64)


def as_bit_matrix(value: Any, field: str, width: int, min_rows: int = 1) -> np.ndarray:
    """Validate a request field holding a list of bit vectors; return float32 [rows, width].

    Raises InvalidRequest naming ``field`` and what is allowed when it is not a non-empty list of
    lists of ``width`` values each 0 or 1.
    """
    if not isinstance(value, (list, tuple)):
        raise InvalidRequest(field, f"must be a list of bit vectors of width {width}, "
                                    f"got {type(value).__name__}")
    if len(value) < min_rows:
        raise InvalidRequest(field, f"must hold at least {min_rows} vector(s), got {len(value)}")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, (list, tuple)):
            raise InvalidRequest(f"{field}[{i}]", f"must be a list of {width} bits (0 or 1), "
                                                  f"got {type(row).__name__}")
        if len(row) != width:
            raise InvalidRequest(f"{field}[{i}]", f"must hold exactly {width} bits, got {len(row)}")
        for j, bit in enumerate(row):
            if isinstance(bit, bool) or bit not in (0, 1):
                raise InvalidRequest(f"{field}[{i}][{j}]", f"must be 0 or 1, got {bit!r}")
        rows.append(row)
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), width)


def as_int(value: Any, field: str, low: int, high: int | None) -> int:
    """Validate an integer request field in [low, high] (high None = unbounded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise InvalidRequest(field, f"must be in {bound}, got {value}")
    return value


def render_rows(matrix: np.ndarray, labels: Sequence[str] | None = None) -> str:
    """ASCII picture of a [time, width] array: one row per channel, time left to right.

    Values > 0.5 draw as '#', others as '.', like the bit plots of the paper's figures.
    """
    matrix = np.asarray(matrix)
    lines = []
    for channel in range(matrix.shape[1]):
        label = labels[channel] if labels is not None else f"{channel:>2}"
        cells = "".join("#" if v > 0.5 else "." for v in matrix[:, channel])
        lines.append(f"{label} {cells}")
    return "\n".join(lines)


def bits_block(title: str, rows: Any) -> str:
    """A bit list drawn channel by channel under ``title`` ('#' = 1, '.' = 0): [time, width],
    or [items, vectors, width] (recall items), drawn side by side with a gap between items."""
    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim == 3:
        matrix = np.concatenate([np.pad(item, ((0, 1), (0, 0))) for item in matrix])[:-1]
    return f"{title}\n{render_rows(matrix)}"


def random_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random 0/1 float32 array."""
    return rng.integers(0, 2, size=shape).astype(np.float32)
