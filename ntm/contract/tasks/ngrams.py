"""Dynamic N-grams (paper §4.4): predict each next bit of a sequence drawn from a 6-gram
distribution the sequence itself must reveal.

Every sequence draws its own table: for each of the 2^5 = 32 contexts (the 5 bits before), the
probability that the next bit is 1, each from Beta(1/2, 1/2). Then L (200) bits are drawn from
it. The first 5 bits are drawn from the table too, with the context padded with zeros on the
left (as if the sequence followed five 0s), so every bit comes from the table and the optimal
estimator below is optimal at every step. The model sees one bit per step on its one input
channel and gives, on its one output channel, the probability that the next bit is 1.

Layout for L = 4 bits b0..b3 (input width 1, output width 1):

    time       0   1   2   3   4
    input      0   b0  b1  b2  b3     the bit before (0 at t = 0: the zero padding)
    target     b0  b1  b2  b3  .      the bit at t
    mask       1   1   1   1   0      the last step predicts the bit after the sequence

Total time steps: L + 1. One input and one output channel, as the paper's network reads a bit
and predicts the next: a bit needs no more, and a delimiter would say nothing (the answer is
due at every step). The zero at t = 0 is the context padding itself, so the input stream is
exactly what the table's contexts are made of. A request of L bits is laid out the same way,
and its last step is the prediction of the bit that would follow it.

The measure is the paper's: the cost in bits per sequence, the binary cross-entropy in bits
summed over the scored steps, beside the cost of the optimal Bayesian estimator on the same
bits (Murphy, "Binomial and multinomial distributions"; the paper's §4.4)::

    P(B = 1 | N1, N0, c) = (N1 + 1/2) / (N1 + N0 + 1)

Symbols (paper -> code):
    c        the 5-bit context before a bit, as an integer 0..31: ``contexts``
    N1, N0   ones and zeros seen so far after context c in this sequence: ``context_counts``
    P        the estimator's probability that the next bit is 1: ``optimal_probabilities``
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ntm.contract.tasks.base import Batch, InvalidRequest
from ntm.contract.tasks.task import Difficulty, Encoded, Task

BETA_PRIOR = 0.5  # Beta(1/2, 1/2): the table's prior, and the estimator's pseudo-counts
# A float32 probability is 1.0 within 6e-8: a certain and wrong prediction is charged
# -log2(1e-7) (23 bits) instead of an infinite cost.
PROBABILITY_FLOOR = 1e-7
# Bits of history per memory row the paper's setup trains with: 200-bit sequences, 128 rows.
BITS_PER_ROW = 200 / 128


def ngram_table(rng: np.random.Generator, context_bits: int) -> np.ndarray:
    """A random table of next-bit probabilities, one per context, each from Beta(1/2, 1/2)
    (paper §4.4).

    -> float64 [2 ** context_bits]: entry c is P(next bit = 1 | context c).
    """
    return rng.beta(BETA_PRIOR, BETA_PRIOR, size=2 ** context_bits)


def contexts(bits: np.ndarray, context_bits: int) -> np.ndarray:
    """The context of every bit: the ``context_bits`` bits before it, zero-padded on the left,
    read as a binary number (the bit just before is the least significant).

    bits: [..., L] of 0/1 -> int64 [..., L].
    """
    bits = np.asarray(bits).astype(np.int64)
    padded = np.concatenate([np.zeros((*bits.shape[:-1], context_bits), np.int64), bits], -1)
    length = bits.shape[-1]
    index = np.zeros(bits.shape, np.int64)
    for back in range(1, context_bits + 1):  # the bit `back` steps before bit t
        index |= padded[..., context_bits - back: context_bits - back + length] << (back - 1)
    return index


def sample_bits(rng: np.random.Generator, table: np.ndarray, length: int) -> np.ndarray:
    """``length`` bits drawn one after another from ``table`` [2 ** context_bits], the context
    of the first bits padded with zeros.

    -> float32 [length].
    """
    mask = table.shape[0] - 1  # keeps the last context_bits bits
    draws = rng.uniform(size=length)
    bits = np.zeros(length, np.float32)
    context = 0
    for t in range(length):
        bit = int(draws[t] < table[context])
        bits[t] = bit
        context = ((context << 1) | bit) & mask
    return bits


def context_counts(bits: np.ndarray, context_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(N1, N0): for every bit, how many ones and zeros followed its context earlier in the
    same sequence (the bit itself not counted).

    bits: [..., L] of 0/1 -> (float64 [..., L], float64 [..., L]).
    """
    bits = np.asarray(bits, np.float64)
    ctx = contexts(bits, context_bits)
    onehot = (ctx[..., None] == np.arange(2 ** context_bits)).astype(np.float64)  # [..., L, C]
    ones = onehot * bits[..., None]
    zeros = onehot * (1.0 - bits[..., None])
    ones_before = np.cumsum(ones, axis=-2) - ones  # counts over earlier steps only
    zeros_before = np.cumsum(zeros, axis=-2) - zeros
    return (np.take_along_axis(ones_before, ctx[..., None], -1)[..., 0],
            np.take_along_axis(zeros_before, ctx[..., None], -1)[..., 0])


def optimal_probabilities(bits: np.ndarray, context_bits: int) -> np.ndarray:
    """The optimal Bayesian estimator (paper §4.4): P(B = 1 | N1, N0, c) =
    (N1 + 1/2) / (N1 + N0 + 1) for every bit, from the counts before it.

    bits: [..., L] of 0/1 -> float64 [..., L]: the probability that bit t is 1, given bits < t.
    """
    ones, zeros = context_counts(bits, context_bits)
    return (ones + BETA_PRIOR) / (ones + zeros + 2 * BETA_PRIOR)


def cost_in_bits(probabilities: np.ndarray, bits: np.ndarray,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """The paper's cost: binary cross-entropy in bits, summed over the (scored) steps,
    -sum_t log2 P(b_t); probabilities are kept PROBABILITY_FLOOR away from 0 and 1.

    probabilities, bits: [..., L]; mask: [..., L] or None (every step) -> float64 [...].
    """
    p = np.clip(np.asarray(probabilities, np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    bits = np.asarray(bits, np.float64)
    cost = -(bits * np.log2(p) + (1.0 - bits) * np.log2(1.0 - p))
    if mask is not None:
        cost = cost * mask
    return cost.sum(axis=-1)


def as_bit_list(value: Any, field: str) -> np.ndarray:
    """Validate a request field holding a non-empty list of bits; return float32 [L]."""
    if not isinstance(value, (list, tuple)):
        raise InvalidRequest(field, f"must be a list of bits (0 or 1), got {type(value).__name__}")
    if not value:
        raise InvalidRequest(field, "must hold at least 1 bit, got 0")
    for i, bit in enumerate(value):
        if isinstance(bit, bool) or bit not in (0, 1):
            raise InvalidRequest(f"{field}[{i}]", f"must be 0 or 1, got {bit!r}")
    return np.asarray(value, np.float32)


class NGramsTask(Task):
    name = "ngrams"
    length_name = "bits"
    request_keys = ("bits",)
    exact_answers = False  # the next bit is random: the measure is the cost (``measures``)
    # A history read by content matches exact contexts: a sharper key over more rows (the grown
    # memory rule that suits copy, power 2) only costs here (docs/limits.md).
    model_defaults = {"grow_strength_power": 0.0}

    def __init__(self, context_bits: int = 5, train_lengths: tuple[int, int] = (200, 200)):
        self.context_bits = context_bits  # 5: 6-grams, the paper's
        self.input_size = 1
        self.output_size = 1
        self.train_lengths = tuple(train_lengths)

    def parameters(self) -> dict[str, Any]:
        return {"context_bits": self.context_bits}

    def layout(self, bits: np.ndarray) -> np.ndarray:
        """Input [L + 1, 1] for L bits: 0, then the bits."""
        inputs = np.zeros((bits.shape[0] + 1, 1), np.float32)
        inputs[1:, 0] = bits
        return inputs

    def time_steps(self, difficulty: Difficulty) -> int:
        return difficulty.length + 1

    def memory_rows(self, difficulty):
        # The trained models keep a history, not counts: the write head moves one row per bit
        # and the read head finds earlier rows by content (docs/limits.md), where the paper's
        # Figure 15 shows per-context addressing. Trained with 128 rows on 200 bits, they
        # learned to work with a history that wraps round 1.5625 times; a longer sequence gets
        # rows in that proportion, so it is never wrapped more than in training. Never fewer
        # than a count-keeping model needs (a row per context, plus one).
        return max(2 ** self.context_bits + 1, math.ceil(difficulty.length / BITS_PER_ROW))

    def memory_rows_for_time_steps(self, time_steps):
        return self.memory_rows(Difficulty(max(0, time_steps - 1)))  # T = L + 1

    def within_training_range(self, difficulty):
        """Up to the longest training sequence: a shorter one is a prefix of what the model
        was trained on (it answers every step of a training sequence as it goes)."""
        return self.min_length <= difficulty.length <= self.train_lengths[1]

    def sequence(self, rng, difficulty):
        return self.episode(sample_bits(rng, ngram_table(rng, self.context_bits),
                                        difficulty.length))

    def episode(self, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs [L+1, 1], targets [L+1, 1], mask [L+1]) predicting the given bits [L]."""
        length = bits.shape[0]
        targets = np.zeros((length + 1, 1), np.float32)
        targets[:length, 0] = bits
        mask = np.ones(length + 1, np.float32)
        mask[length] = 0.0
        return self.layout(bits), targets, mask

    def measures(self, probabilities, batch: Batch):
        """The cost in bits per sequence of the model and of the optimal Bayesian estimator on
        the same bits, and the model's excess over it."""
        bits = batch.targets[..., 0]
        model = cost_in_bits(np.asarray(probabilities)[..., 0], bits, batch.mask)
        optimal = cost_in_bits(optimal_probabilities(bits, self.context_bits), bits, batch.mask)
        return {"cost_bits": model, "optimal_bits": optimal, "excess_bits": model - optimal}

    def default_eval_points(self):
        return [Difficulty(n) for n in (50, 100, 200, 400, 1000)]

    def encode(self, request):
        request = self.require_object(request, ["bits"])
        bits = as_bit_list(request["bits"], "bits")
        length = bits.shape[0]
        return Encoded(self.layout(bits), slice(0, length + 1), Difficulty(length))

    def decode(self, probabilities, encoded):
        """-> the probability that the bit after the request's is 1 (and that bit, thresholded),
        the cost in bits of the request's own bits under the model and under the optimal
        estimator, and the model's probability of a 1 at every step ([L + 1, 1])."""
        probs = np.asarray(probabilities)[encoded.output_steps][:, 0].astype(np.float64)
        bits = encoded.inputs[1:, 0]
        optimal = optimal_probabilities(np.append(bits, 0.0), self.context_bits)
        return {
            "next_bit": int(probs[-1] > 0.5),
            "next_bit_probability": round(float(probs[-1]), 6),
            "optimal_next_bit_probability": round(float(optimal[-1]), 6),
            "cost_bits": round(float(cost_in_bits(probs[:-1], bits)), 6),
            "optimal_cost_bits": round(float(cost_in_bits(optimal[:-1], bits)), 6),
            "probabilities": np.round(probs[:, None], 6).tolist(),
        }

    def request_example(self, rng, difficulty):
        """Bits of a random table; the answer is the optimal estimator's (no model does better
        on average over tables)."""
        bits = sample_bits(rng, ngram_table(rng, self.context_bits), difficulty.length)
        optimal = optimal_probabilities(np.append(bits, 0.0), self.context_bits)
        answer = {"next_bit_probability": round(float(optimal[-1]), 6),
                  "cost_bits": round(float(cost_in_bits(optimal[:-1], bits)), 6),
                  "probabilities": np.round(optimal[:, None], 6).tolist()}
        return {"bits": bits.astype(int).tolist()}, answer

    def render_answer(self, request, answer):
        """The bits ('#' = 1), then the probability of a 1 at each step, the model's and the
        optimal estimator's, in tenths (0-9; the last column is the bit after the request's);
        then the costs."""
        bits = np.asarray(request["bits"], np.float64)

        def tenths(p: np.ndarray) -> str:
            return "".join(str(v) for v in np.minimum(p * 10, 9).astype(int))

        lines = ["bits          " + "".join("#" if bit else "." for bit in request["bits"])]
        if "probabilities" in answer:
            lines.append("model p(1)    " + tenths(np.asarray(answer["probabilities"])[:, 0]))
        optimal = optimal_probabilities(np.append(bits, 0.0), self.context_bits)
        lines.append("optimal p(1)  " + tenths(optimal))
        text = ["\n".join(lines)]
        if "cost_bits" in answer:
            line = f"cost {answer['cost_bits']:.2f} bits"
            if "optimal_cost_bits" in answer:
                line += (f", optimal Bayesian estimator {answer['optimal_cost_bits']:.2f} bits "
                         f"(excess {answer['cost_bits'] - answer['optimal_cost_bits']:+.2f})")
            text.append(line)
        if "next_bit_probability" in answer:
            text.append(f"next bit: P(1) = {answer['next_bit_probability']:.3f}"
                        + (f" (optimal {answer['optimal_next_bit_probability']:.3f})"
                           if "optimal_next_bit_probability" in answer else ""))
        return text
