"""Floating-point operations in one NTM time step, counted from the model's sizes.

Used by the inference benchmark to turn a measured time into achieved FLOP/s. The count follows
``NTMCell.step`` term by term for one sequence: a matrix product [a, b] x [b, c] counts
2abc (multiply and add), an elementwise operation one per output element, a softmax or a
normalisation three per element (exp or pow, sum, divide). Transcendentals count as one, so the
count is a floor on the work, not a model of its cost.

Symbols: I input width, O output width, U controller units, N memory rows, M row width,
R read heads, W write heads, H = R + W, S = 2 * shift_range + 1 shifts.
"""

from __future__ import annotations

from ntm.model.config import ModelConfig


def controller_flops(c: ModelConfig) -> int:
    """LSTM: one [I + R M + U] x [4U] product and ~10U gate arithmetic; feedforward: one
    [I + R M] x [U] product and a tanh."""
    inputs = c.input_size + c.num_read_heads * c.memory_width
    units = c.controller_size
    if c.controller == "lstm":
        return 2 * (inputs + units) * 4 * units + 4 * units + 10 * units
    return 2 * inputs * units + 2 * units


def head_parameter_flops(c: ModelConfig) -> int:
    """The [U] x [P] head projection, its clip and the activations (P parameters)."""
    params = c.num_heads * (c.memory_width + 3 + c.num_shifts) + c.num_write_heads * 2 * c.memory_width
    return 2 * c.controller_size * params + 4 * params


def addressing_flops(c: ModelConfig) -> int:
    """Eqs. 5-9 for every head: cosine similarity (key-row products and both norms), the
    softmax, interpolation, the S-tap circular convolution and sharpening."""
    h, n, m, s = c.num_heads, c.memory_size, c.memory_width, c.num_shifts
    cosine = 2 * h * n * m + 3 * h * m + 3 * n * m + 3 * h * n
    content = h * n + 3 * h * n
    interpolate = 3 * h * n
    shift = 2 * h * n * s
    sharpen = 3 * h * n + 3 * h * n
    return cosine + content + interpolate + shift + sharpen


def memory_flops(c: ModelConfig) -> int:
    """Eq. 2 read (2 R N M) and eqs. 3-4 write: per write head the erase and add outer products
    (N M each), then 1 - erase, the product with the memory and the sum (3 N M)."""
    n, m = c.memory_size, c.memory_width
    return 2 * c.num_read_heads * n * m + c.num_write_heads * 2 * n * m + 3 * n * m


def output_flops(c: ModelConfig) -> int:
    """The [U + R M] x [O] output projection, its bias and clip."""
    inputs = c.controller_size + c.num_read_heads * c.memory_width
    return 2 * inputs * c.output_size + 3 * c.output_size


def flops_per_step(c: ModelConfig) -> int:
    """FLOPs of one time step of one sequence (multiply by time steps and batch)."""
    return (controller_flops(c) + head_parameter_flops(c) + addressing_flops(c)
            + memory_flops(c) + output_flops(c))
