"""Repeat copy (paper §4.2): read a sequence and a repeat count, write the sequence that many
times, then an end marker.

Layout for L = 2, repeats n = 2 (bits = 8; input width 10, output width 9):

    time       0  1  2  3  4  5  6  7
    bits       x0 x1 .  .  .  .  .  .       input channels 0..7
    delim      .  .  1  .  .  .  .  .       input channel 8
    repeats    .  .  r  .  .  .  .  .       input channel 9: r = n / repeat_scale
    target     .  .  .  x0 x1 x0 x1 .       output channels 0..7
    end        .  .  .  .  .  .  .  1       output channel 8
    mask       0  0  0  1  1  1  1  1

Total time steps: L (n + 1) + 2. ``repeat_scale`` is the largest training repeat count (10), so
the repeat channel is 1.0 at the top of the training range and 2.0 at twice it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ntm.contract.tasks.base import as_bit_matrix, as_int, bits_block, random_bits
from ntm.contract.tasks.task import Difficulty, Encoded, Task


class RepeatCopyTask(Task):
    name = "repeat-copy"
    request_keys = ("sequence", "repeats")

    def __init__(
        self,
        bits: int = 8,
        train_lengths: tuple[int, int] = (1, 10),
        train_repeats: tuple[int, int] = (1, 10),
        repeat_scale: float = 10.0,
    ):
        self.bits = bits
        self.input_size = bits + 2
        self.output_size = bits + 1
        self.train_lengths = tuple(train_lengths)
        self.train_repeats = tuple(train_repeats)
        self.repeat_scale = float(repeat_scale)

    def parameters(self) -> dict[str, Any]:
        return {"bits": self.bits, "repeat_scale": self.repeat_scale}

    def layout(self, sequence: np.ndarray, repeats: int) -> np.ndarray:
        """Input [L (n + 1) + 2, bits + 2] for a [L, bits] sequence and n repeats."""
        length = sequence.shape[0]
        inputs = np.zeros((length * (repeats + 1) + 2, self.input_size), np.float32)
        inputs[:length, : self.bits] = sequence
        inputs[length, self.bits] = 1.0
        inputs[length, self.bits + 1] = repeats / self.repeat_scale
        return inputs

    def time_steps(self, difficulty: Difficulty) -> int:
        return difficulty.length * (difficulty.repeats + 1) + 2

    def memory_rows(self, difficulty):
        return difficulty.length + 2  # the sequence is stored once, whatever the repeats

    def memory_rows_for_time_steps(self, time_steps):
        return (time_steps - 2) // 2 + 2  # T = L (n + 1) + 2 with n >= 1: L <= (T - 2) / 2

    def sequence(self, rng, difficulty):
        length, repeats = difficulty.length, difficulty.repeats
        seq = random_bits(rng, (length, self.bits))
        time_steps = length * (repeats + 1) + 2
        targets = np.zeros((time_steps, self.output_size), np.float32)
        targets[length + 1: length + 1 + length * repeats, : self.bits] = np.tile(seq, (repeats, 1))
        targets[-1, self.bits] = 1.0
        mask = np.zeros(time_steps, np.float32)
        mask[length + 1:] = 1.0
        return self.layout(seq, repeats), targets, mask

    def default_eval_points(self):
        return [Difficulty(5, 5), Difficulty(10, 10), Difficulty(20, 10), Difficulty(10, 20),
                Difficulty(20, 20)]

    def quality_bars(self):
        """In range, a grid over lengths and repeats, the corners included: a model once met
        5x5 and 10x10 while 2x10 was 82.5% perfect, so two points do not guard
        the range. Beyond it, the paper's twice-the-length: 20x10."""
        in_range = [(1, 10), (2, 7), (2, 10), (3, 10), (5, 5), (6, 10), (10, 1), (10, 2),
                    (10, 10)]
        bars = {Difficulty(length, repeats): 0.1 for length, repeats in in_range}
        bars[Difficulty(20, 10)] = 5.0
        return bars

    def encode(self, request):
        request = self.require_object(request, ["sequence", "repeats"])
        seq = as_bit_matrix(request["sequence"], "sequence", self.bits)
        repeats = as_int(request["repeats"], "repeats", 1, None)
        length = seq.shape[0]
        total = length * (repeats + 1) + 2
        return Encoded(self.layout(seq, repeats), slice(length + 1, total),
                       Difficulty(length, repeats))

    def decode(self, probabilities, encoded):
        probs = np.asarray(probabilities)[encoded.output_steps]
        bits = probs[:-1, : self.bits]
        return {
            "output": (bits > 0.5).astype(int).tolist(),
            "end_marker": float(round(probs[-1, self.bits], 6)),
            "probabilities": np.round(bits.astype(np.float64), 6).tolist(),
        }

    def answer_probabilities(self, answer, encoded):
        out = super().answer_probabilities(answer, encoded)
        out[encoded.output_steps.stop - 1, self.bits] = answer["end_marker"]  # the last step's
        return out

    def request_example(self, rng, difficulty):
        seq = random_bits(rng, (difficulty.length, self.bits)).astype(int).tolist()
        return ({"sequence": seq, "repeats": difficulty.repeats},
                {"output": seq * difficulty.repeats})

    def render_answer(self, request, answer):
        same = answer["output"] == request["sequence"] * request["repeats"]
        return [bits_block("input", request["sequence"]) + f"\nrepeats {request['repeats']}",
                bits_block("output", answer["output"]),
                f"end marker {answer['end_marker']:.3f}; output equals input x "
                f"{request['repeats']}: {'yes' if same else 'no'}"]
