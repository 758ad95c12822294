"""Priority sort (paper §4.5): read vectors, each with a priority, then write the
highest-priority ones, sorted by priority, highest first.

Each of the n (20) inputs is a random vector of ``bits`` (8) bits with a priority drawn
uniformly from [-1, 1] on its own input channel. A delimiter on a channel of its own ends the
input, as in copy: the model is not told n in advance. Then come k = ``outputs(n)`` steps of
no input, in which the target is the k highest-priority vectors, highest first. The paper keeps
16 of 20; for other counts k = round(0.8 n), at least 1 (e.g. 8 of 10, 24 of 30). Equal
priorities (possible in a request, not in drawn data) keep their input order.

Layout for n = 3 inputs, k = 2 (bits = 8; input width 10, output width 8):

    time       0   1   2   3   4   5
    bits       x0  x1  x2  .   .   .      input channels 0..7
    priority   p0  p1  p2  .   .   .      input channel 8: in [-1, 1]
    delim      .   .   .   1   .   .      input channel 9
    target     .   .   .   .   y0  y1     output channels 0..7: y0 the highest-priority vector
    mask       0   0   0   0   1   1

Total time steps: n + 1 + k.

The paper's NTM for this task had a feed-forward controller with 8 read and 8 write heads
(its Table 2): ``ntm train --task priority-sort --controller feedforward --read-heads 8
--write-heads 8``: these flags are the user's to give (docs/tasks.md). The task sets one model
default, the paper's learned initial memory, with which the network learned faster per step
than from a constant memory (measured: docs/training.md#initial-memory).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ntm.contract.tasks.base import InvalidRequest, as_bit_matrix, bits_block, random_bits
from ntm.contract.tasks.task import Difficulty, Encoded, Task

PRIORITY_RANGE = (-1.0, 1.0)  # uniform, paper §4.5


def outputs(n: int) -> int:
    """How many vectors the answer holds for n inputs: round(0.8 n), at least 1 (the paper's
    16 of 20). In integers, (4 n + 2) // 5: 0.8 n is never halfway between two integers."""
    return max(1, (4 * n + 2) // 5)


def sorted_by_priority(vectors: np.ndarray, priorities: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` highest-priority vectors, highest first (ties: input order).

    vectors: [n, bits]; priorities: [n] -> [count, bits].
    """
    order = np.argsort(-np.asarray(priorities), kind="stable")
    return np.asarray(vectors)[order[:count]]


def as_priorities(value: Any, field: str, count: int) -> np.ndarray:
    """Validate a request field holding ``count`` priorities, numbers in [-1, 1]; return
    float32 [count]."""
    low, high = PRIORITY_RANGE
    if not isinstance(value, (list, tuple)):
        raise InvalidRequest(field, f"must be a list of {count} numbers in [{low:g}, {high:g}] "
                                    f"(one per vector), got {type(value).__name__}")
    if len(value) != count:
        raise InvalidRequest(field, f"must hold one priority per vector: {count}, "
                                    f"got {len(value)}")
    for i, priority in enumerate(value):
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise InvalidRequest(f"{field}[{i}]", f"must be a number, got "
                                                  f"{type(priority).__name__}")
        if not (math.isfinite(priority) and low <= priority <= high):
            raise InvalidRequest(f"{field}[{i}]", f"must be in [{low:g}, {high:g}] (the range "
                                                  f"the model was trained on), got {priority!r}")
    return np.asarray(value, np.float32)


class PrioritySortTask(Task):
    name = "priority-sort"
    length_name = "vectors"
    request_keys = ("vectors", "priorities")
    model_defaults = {"initial_memory": "learned"}

    def __init__(self, bits: int = 8, train_lengths: tuple[int, int] = (20, 20)):
        self.bits = bits
        self.input_size = bits + 2
        self.output_size = bits
        self.train_lengths = tuple(train_lengths)

    def parameters(self) -> dict[str, Any]:
        return {"bits": self.bits}

    def layout(self, vectors: np.ndarray, priorities: np.ndarray) -> np.ndarray:
        """Input [n + 1 + k, bits + 2] for vectors [n, bits] and their priorities [n]."""
        n = vectors.shape[0]
        inputs = np.zeros((n + 1 + outputs(n), self.input_size), np.float32)
        inputs[:n, : self.bits] = vectors
        inputs[:n, self.bits] = priorities
        inputs[n, self.bits + 1] = 1.0
        return inputs

    def time_steps(self, difficulty: Difficulty) -> int:
        return difficulty.length + 1 + outputs(difficulty.length)

    def memory_rows(self, difficulty):
        return difficulty.length + 2  # n vectors and the delimiter step, plus one

    def memory_rows_for_time_steps(self, time_steps):
        # The most inputs n whose sequence fits in time_steps (T = n + 1 + round(0.8 n)).
        n = max(1, (time_steps - 1) * 5 // 9)
        while n > 1 and self.time_steps(Difficulty(n)) > time_steps:
            n -= 1
        while self.time_steps(Difficulty(n + 1)) <= time_steps:
            n += 1
        return n + 2

    def sequence(self, rng, difficulty):
        n = difficulty.length
        vectors = random_bits(rng, (n, self.bits))
        # float32: the model sees float32 priorities, and the order is theirs
        priorities = rng.uniform(*PRIORITY_RANGE, size=n).astype(np.float32)
        return self.episode(vectors, priorities)

    def episode(self, vectors: np.ndarray, priorities: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs [n+1+k, bits+2], targets [n+1+k, bits], mask [n+1+k]) sorting given
        vectors [n, bits] by given priorities [n]."""
        n, k = vectors.shape[0], outputs(vectors.shape[0])
        targets = np.zeros((n + 1 + k, self.output_size), np.float32)
        targets[n + 1:] = sorted_by_priority(vectors, priorities, k)
        mask = np.zeros(n + 1 + k, np.float32)
        mask[n + 1:] = 1.0
        return self.layout(vectors, priorities), targets, mask

    def default_eval_points(self):
        return [Difficulty(n) for n in (5, 10, 15, 20, 25, 30, 40, 50)]

    def encode(self, request):
        request = self.require_object(request, ["vectors", "priorities"])
        vectors = as_bit_matrix(request["vectors"], "vectors", self.bits)
        priorities = as_priorities(request["priorities"], "priorities", vectors.shape[0])
        n = vectors.shape[0]
        return Encoded(self.layout(vectors, priorities), slice(n + 1, n + 1 + outputs(n)),
                       Difficulty(n))

    def decode(self, probabilities, encoded):
        probs = np.asarray(probabilities)[encoded.output_steps]
        return {
            "output": (probs > 0.5).astype(int).tolist(),
            "probabilities": np.round(probs.astype(np.float64), 6).tolist(),
        }

    def request_example(self, rng, difficulty):
        """Distinct priorities with 3 decimals (readable, and one right answer)."""
        n = difficulty.length
        vectors = random_bits(rng, (n, self.bits)).astype(int)
        while True:
            priorities = np.round(rng.uniform(*PRIORITY_RANGE, size=n), 3)
            if len(set(priorities.tolist())) == n:
                break
        request = {"vectors": vectors.tolist(), "priorities": priorities.tolist()}
        return request, {"output": sorted_by_priority(vectors, priorities, outputs(n)).tolist()}

    def render_answer(self, request, answer):
        vectors, priorities = np.asarray(request["vectors"]), np.asarray(request["priorities"])
        order = np.argsort(-priorities, kind="stable")[: outputs(len(vectors))]
        right = answer["output"] == sorted_by_priority(vectors, priorities, len(order)).tolist()
        expected = " ".join(str(i) for i in order)
        return [bits_block("input", request["vectors"]),
                "priorities " + " ".join(f"{p:+.2f}" for p in priorities),
                bits_block("output", answer["output"]),
                f"expected: inputs {expected} (highest priority first); output equals them: "
                + ("yes" if right else "no")]
