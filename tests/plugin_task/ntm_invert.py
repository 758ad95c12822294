"""A toy task defined outside the ntm package, to prove the plug-in route: bit inversion.

Read a sequence of random bit vectors, then write it back with every bit flipped.
Layout for a sequence of length L = 3 (bits = 8, input width 9, output width 8):

    time     0  1  2  3  4   5   6
    bits     x0 x1 x2 .  .   .   .       input channels 0..7
    delim    .  .  .  1  .   .   .       input channel 8
    target   .  .  .  .  ~x0 ~x1 ~x2     output channels 0..7, scored (mask 1) at t = L+1 .. 2L

Total time steps: 2L + 1. Requests: ``{"flip": [[0,1,...], ...]}`` -> ``{"output": [[1,0,...],
...], "probabilities": [...]}``.

It is found through the ``ntm.tasks`` entry point of the hand-written
``ntm_invert-0.1.dist-info`` beside this file, once this folder is on sys.path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntm.contract.tasks import Difficulty, Encoded, Task, as_bit_matrix, bits_block, random_bits


class InvertTask(Task):
    name = "invert"
    request_keys = ("flip",)

    def __init__(self, bits: int = 8, train_lengths: tuple[int, int] = (1, 10)):
        self.bits = bits
        self.input_size = bits + 1
        self.output_size = bits
        self.train_lengths = tuple(train_lengths)

    def parameters(self) -> dict[str, Any]:
        return {"bits": self.bits}

    def _layout(self, seq: np.ndarray) -> np.ndarray:
        length = seq.shape[0]
        inputs = np.zeros((2 * length + 1, self.input_size), np.float32)
        inputs[:length, : self.bits] = seq
        inputs[length, self.bits] = 1.0
        return inputs

    def time_steps(self, difficulty: Difficulty) -> int:
        return 2 * difficulty.length + 1

    def memory_rows(self, difficulty: Difficulty) -> int:
        return difficulty.length + 2

    def memory_rows_for_time_steps(self, time_steps: int) -> int:
        return (time_steps - 1) // 2 + 2

    def sequence(self, rng, difficulty):
        length = difficulty.length
        seq = random_bits(rng, (length, self.bits))
        targets = np.zeros((2 * length + 1, self.output_size), np.float32)
        targets[length + 1:] = 1.0 - seq
        mask = np.zeros(2 * length + 1, np.float32)
        mask[length + 1:] = 1.0
        return self._layout(seq), targets, mask

    def default_eval_points(self):
        return [Difficulty(n) for n in (5, 10, 20, 40)]

    def encode(self, request):
        request = self.require_object(request, ["flip"])
        seq = as_bit_matrix(request["flip"], "flip", self.bits)
        length = seq.shape[0]
        return Encoded(self._layout(seq), slice(length + 1, 2 * length + 1), Difficulty(length))

    def decode(self, probabilities, encoded):
        probs = np.asarray(probabilities)[encoded.output_steps]
        return {"output": (probs > 0.5).astype(int).tolist(),
                "probabilities": np.round(probs.astype(np.float64), 6).tolist()}

    def request_example(self, rng, difficulty):
        seq = random_bits(rng, (difficulty.length, self.bits)).astype(int)
        return {"flip": seq.tolist()}, {"output": (1 - seq).tolist()}

    def render_answer(self, request, answer):
        right = answer["output"] == [[1 - b for b in row] for row in request["flip"]]
        return [bits_block("input", request["flip"]), bits_block("output", answer["output"]),
                f"output is the input inverted: {'yes' if right else 'no'}"]
