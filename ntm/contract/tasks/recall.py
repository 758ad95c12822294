"""Associative recall (paper §4.3): after a list of items, given one item, answer the next.

Each item is ``item_length`` (3) vectors of ``bits`` (6) bits. Layout for 2 items a, b and
query a (input width 8, output width 6):

    time       0  1  2  3  4  5  6  7  8  9  10 11 12 13 14 15
    bits       .  a0 a1 a2 .  b0 b1 b2 .  a0 a1 a2 .  .  .  .     input channels 0..5
    item       1  .  .  .  1  .  .  .  .  .  .  .  .  .  .  .     input channel 6: item delimiter
    query      .  .  .  .  .  .  .  .  1  .  .  .  1  .  .  .     input channel 7: query delimiters
    target     .  .  .  .  .  .  .  .  .  .  .  .  .  b0 b1 b2    output channels 0..5
    mask       0 ...                                  1  1  1

Total time steps: n (item_length + 1) + 2 item_length + 2. The query is drawn from every item
but the last (the last has no successor).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ntm.contract.tasks.base import InvalidRequest, as_bit_matrix, random_bits, bits_block
from ntm.contract.tasks.task import Difficulty, Encoded, Task


class RecallTask(Task):
    name = "recall"
    length_name = "items"
    min_length = 2
    request_keys = ("items",)
    # A recall run either converges by step ~10,000 or sits on a plateau near 3.7 bits/seq
    # (seed 1 of 5 with the defaults); restarting it at step 8,000 converged it (seeds.md).
    train_defaults = {"restart_at": 8000}

    def __init__(self, bits: int = 6, item_length: int = 3, train_lengths: tuple[int, int] = (2, 6)):
        self.bits = bits
        self.item_length = item_length
        self.input_size = bits + 2
        self.output_size = bits
        self.train_lengths = tuple(train_lengths)

    def parameters(self) -> dict[str, Any]:
        return {"bits": self.bits, "item_length": self.item_length}

    def layout(self, items: np.ndarray, query: int) -> np.ndarray:
        """Input for items [n, item_length, bits] and the query's index."""
        return np.concatenate([self.layout_items(items), self.layout_query(items[query])])

    def layout_items(self, items: np.ndarray) -> np.ndarray:
        """The item part [n (item_length + 1), in]: a delimiter, then the item, per item."""
        n, k = items.shape[0], self.item_length
        inputs = np.zeros((n * (k + 1), self.input_size), np.float32)
        for i in range(n):
            start = i * (k + 1)
            inputs[start, self.bits] = 1.0
            inputs[start + 1: start + 1 + k, : self.bits] = items[i]
        return inputs

    def layout_query(self, query: np.ndarray) -> np.ndarray:
        """The query part [2 item_length + 2, in]: delimiter, query, delimiter, then the
        steps in which the answer comes."""
        k = self.item_length
        inputs = np.zeros((2 * k + 2, self.input_size), np.float32)
        inputs[0, self.bits + 1] = 1.0
        inputs[1: 1 + k, : self.bits] = query
        inputs[1 + k, self.bits + 1] = 1.0
        return inputs

    def time_steps(self, difficulty: Difficulty) -> int:
        return difficulty.length * (self.item_length + 1) + 2 * self.item_length + 2

    # Recall looks items up by content, which needs headroom: measured on the bundled model,
    # 26 items (110 rows needed) in 128 rows were perfect, 27 (114) missed 1 of 200 and 28-30
    # missed a few; with the next-larger memory 28 and 30 items were perfect (100 each).
    MAX_FILL = 7 / 8

    def memory_rows(self, difficulty):
        # Every step before the answer: n (k + 1) item steps and k + 2 query steps, plus one;
        # then room for the memory to stay at most MAX_FILL full.
        return self.memory_rows_for_time_steps(self.time_steps(difficulty))

    def memory_rows_for_time_steps(self, time_steps):
        return math.ceil((time_steps - self.item_length + 1) / self.MAX_FILL)

    def sequence(self, rng, difficulty):
        n, k = difficulty.length, self.item_length
        items = random_bits(rng, (n, k, self.bits))
        query = int(rng.integers(0, n - 1))
        inputs = self.layout(items, query)
        targets = np.zeros((inputs.shape[0], self.output_size), np.float32)
        targets[-k:] = items[query + 1]
        mask = np.zeros(inputs.shape[0], np.float32)
        mask[-k:] = 1.0
        return inputs, targets, mask

    def default_eval_points(self):
        return [Difficulty(n) for n in (*range(2, 17), 20, 24, 30, 40, 60, 100)]

    def quality_bars(self):
        return {Difficulty(6): 0.1, Difficulty(12): 1.0, Difficulty(30): 1.0}

    def encode(self, request):
        request = self.require_object(request, ["items", "query"])
        items = self.parse_items(request["items"], at_least=2)
        query = self.parse_query(request["query"], items)
        inputs = self.layout(items, query)
        k = self.item_length
        return Encoded(inputs, slice(inputs.shape[0] - k, inputs.shape[0]), Difficulty(len(items)))

    def parse_items(self, field: Any, at_least: int) -> np.ndarray:
        """A request's "items" -> [n, item_length, bits]; InvalidRequest naming the problem."""
        if not isinstance(field, (list, tuple)) or len(field) < at_least:
            raise InvalidRequest("items", f"must be a list of at least {at_least} item(s), each "
                                          f"a list of {self.item_length} bit vectors of width "
                                          f"{self.bits}")
        items = np.stack([as_bit_matrix(item, f"items[{i}]", self.bits)
                          for i, item in enumerate(field)])
        if items.shape[1] != self.item_length:
            raise InvalidRequest("items", f"each item must hold exactly {self.item_length} "
                                          f"vectors, got {items.shape[1]}")
        return items

    def parse_query(self, field: Any, items: np.ndarray) -> int:
        """A request's "query" -> the index of the item it equals (it must have a successor)."""
        query = as_bit_matrix(field, "query", self.bits)
        if query.shape[0] != self.item_length:
            raise InvalidRequest("query", f"must hold exactly {self.item_length} vectors, "
                                          f"got {query.shape[0]}")
        matches = [i for i in range(len(items)) if np.array_equal(items[i], query)]
        if not matches:
            raise InvalidRequest("query", "must equal one of the items")
        if matches[0] == len(items) - 1:
            raise InvalidRequest("query", "matches only the last item, which has no successor")
        return matches[0]

    def encode_part(self, request, context):
        """Items now, a query later: a part holds "items" (stored, nothing answered), a
        "query" about every item stored so far (answered), or both. The context keeps the
        items, so a query is checked against them."""
        if not isinstance(request, dict) or not ({"items", "query"} & set(request)):
            raise InvalidRequest("request", "a recall part holds \"items\" to store, a "
                                            "\"query\" to answer, or both")
        request = self.require_object(request, [k for k in ("items", "query") if k in request])
        stored = context.get("items", np.zeros((0, self.item_length, self.bits), np.float32))
        new = self.parse_items(request["items"], 1) if "items" in request else stored[:0]
        items = np.concatenate([stored, new])
        parts = [self.layout_items(new)]
        if "query" in request:
            if len(items) < 2:
                raise InvalidRequest("query", f"needs at least 2 stored items, the sequence "
                                              f"holds {len(items)}")
            parts.append(self.layout_query(items[self.parse_query(request["query"], items)]))
        inputs = np.concatenate(parts)
        k = self.item_length
        answer = slice(inputs.shape[0] - k, inputs.shape[0]) if "query" in request \
            else slice(0, 0)
        queries = context.get("queries", 0) + ("query" in request)
        return (Encoded(inputs, answer, Difficulty(max(len(items), 2))),
                {"items": items, "queries": queries})

    def decode_part(self, probabilities, encoded, context):
        answer = super().decode_part(probabilities, encoded, context)
        answer["stored_items"] = len(context["items"])
        return answer

    def decode(self, probabilities, encoded):
        probs = np.asarray(probabilities)[encoded.output_steps]
        return {
            "item": (probs > 0.5).astype(int).tolist(),
            "probabilities": np.round(probs.astype(np.float64), 6).tolist(),
        }

    def request_example(self, rng, difficulty):
        n = difficulty.length
        while True:  # distinct items, so the answer is unambiguous
            items = random_bits(rng, (n, self.item_length, self.bits)).astype(int)
            if len({item.tobytes() for item in items}) == n:
                break
        query = int(rng.integers(0, n - 1))
        request = {"items": items.tolist(), "query": items[query].tolist()}
        return request, {"item": items[query + 1].tolist()}

    def render_answer(self, request, answer):
        return [bits_block("items (one column per vector, gaps between items)", request["items"]),
                bits_block("query", request["query"]), bits_block("answer", answer["item"])]
