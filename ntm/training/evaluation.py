"""Generalisation tables: bits per sequence at chosen difficulties (NumPy only).

``evaluate`` takes any function from inputs [batch, time, in] to probabilities
[batch, time, out], so the same table is computed for the TensorFlow model, a SavedModel or an
ONNX model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ntm.contract.memory_plan import choose_memory_size
from ntm.contract.tasks import Difficulty, Task, bit_errors

ProbabilityFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalRow:
    """One point of the table: bits/seq mean and worst over ``sequences`` fresh sequences."""

    length: int
    repeats: int | None
    sequences: int
    mean_bits: float
    worst_bits: float
    perfect_fraction: float  # share of sequences with no wrong bit
    memory_size: int | None = None  # memory rows the point ran with (None: not recorded)
    # The task's own measures, means over the sequences (Task.measures; None: it has none)
    measures: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(
    probabilities: ProbabilityFn,
    task: Task,
    points: Sequence[Difficulty],
    sequences: int = 100,
    batch_size: int = 50,
    seed: int = 1234,
    rows_for: Callable[[Difficulty], int] | None = None,
) -> list[EvalRow]:
    """Bits/seq at each point on ``sequences`` fresh sequences (seeded, so repeatable).

    With ``rows_for``, each point runs with ``rows_for(point)`` memory rows:
    ``probabilities`` is then called as ``probabilities(inputs, rows)``. A task's own
    measures (``Task.measures``) are averaged beside.
    """
    rows = []
    for point in points:
        n_rows = rows_for(point) if rows_for is not None else None
        forward = probabilities if n_rows is None else \
            (lambda x, fn=probabilities, n=n_rows: fn(x, n))
        rng = np.random.default_rng([seed, point.length, point.repeats or 0])
        errors, measured = [], {}
        remaining = sequences
        while remaining > 0:
            n = min(batch_size, remaining)
            batch = task.fixed_batch(rng, n, point)
            probs = forward(batch.inputs)
            errors.append(bit_errors(probs, batch.targets, batch.mask))
            for name, values in task.measures(probs, batch).items():
                measured.setdefault(name, []).append(values)
            remaining -= n
        e = np.concatenate(errors)
        means = {name: float(np.concatenate(v).mean()) for name, v in measured.items()}
        rows.append(EvalRow(point.length, point.repeats, len(e), float(e.mean()), float(e.max()),
                            float((e == 0).mean()), n_rows, means or None))
    return rows


def failure_upper_bound(failures: int, sequences: int, confidence: float = 0.95) -> float:
    """The one-sided exact (Clopper-Pearson) upper bound on a failure rate: the largest p at
    which seeing at most ``failures`` failed sequences in ``sequences`` still has probability
    1 - ``confidence`` or more. With 0 failures it is 1 - (1 - confidence)^(1/n), about 3/n at
    95% (the rule of three); with every sequence failed, 1.
    """
    if not 0 <= failures <= sequences or sequences < 1:
        raise ValueError(f"failures must lie in 0..sequences, got {failures} of {sequences}")
    alpha = 1.0 - confidence
    if failures == sequences:
        return 1.0
    if failures == 0:
        return 1.0 - alpha ** (1.0 / sequences)

    def at_most(p: float) -> float:  # P(X <= failures), X ~ Binomial(sequences, p)
        log_p, log_q = math.log(p), math.log1p(-p)
        terms = [math.lgamma(sequences + 1) - math.lgamma(i + 1) - math.lgamma(sequences - i + 1)
                 + i * log_p + (sequences - i) * log_q for i in range(failures + 1)]
        top = max(terms)
        return math.exp(top) * sum(math.exp(t - top) for t in terms)

    low, high = failures / sequences, 1.0  # P(X <= k) falls as p rises
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if at_most(mid) > alpha else (low, mid)
    return high


def rows_for_points(task: Task, trained: int,
                    memory_size: int | None = None) -> Callable[[Difficulty], int]:
    """Difficulty -> memory rows: ``memory_size``, else the smallest of trained x 1, 2, 4, ...
    that holds it (``ntm.contract.memory_plan``, without the server's upper limit)."""
    if memory_size is not None:
        return lambda difficulty: memory_size
    return lambda difficulty: choose_memory_size(task.memory_rows(difficulty), trained,
                                                 maximum=2 ** 30)


def format_table(rows: Sequence[EvalRow], length_name: str = "length") -> str:
    """A plain-text table of ``rows``, the task's own measures in columns after."""
    has_repeats = any(r.repeats is not None for r in rows)
    has_rows = any(r.memory_size is not None for r in rows)
    measures = list(dict.fromkeys(name for r in rows for name in (r.measures or {})))
    head = f"{length_name:>8}" + (f" {'repeats':>8}" if has_repeats else "")
    lines = [head + f" {'bits/seq':>10} {'worst':>7} {'perfect':>8} {'n':>5}"
             + (f" {'rows':>5}" if has_rows else "")
             + "".join(f" {name:>12}" for name in measures)]
    for r in rows:
        line = f"{r.length:>8}" + (f" {r.repeats:>8}" if has_repeats else "")
        lines.append(line + f" {r.mean_bits:>10.3f} {r.worst_bits:>7.0f} "
                            f"{100 * r.perfect_fraction:>7.1f}% {r.sequences:>5}"
                     + (f" {r.memory_size or '':>5}" if has_rows else "")
                     + "".join(f" {(r.measures or {}).get(name, float('nan')):>12.3f}"
                               for name in measures))
    return "\n".join(lines)


def parse_points(text: str, task: Task) -> list[Difficulty]:
    """"10,20,30" (or "10x10,20x10" for repeat-copy) -> difficulties; ValueError when bad."""
    points = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "x" in part:
                length, repeats = (int(v) for v in part.split("x"))
            else:
                length, repeats = int(part), None
        except ValueError:
            raise ValueError(f"bad point {part!r}: expected an integer"
                             + (" or LENGTHxREPEATS" if task.train_repeats else "")) from None
        if task.train_repeats is not None and repeats is None:
            raise ValueError(f"bad point {part!r}: {task.name} points are LENGTHxREPEATS, "
                             f"e.g. 10x5")
        if task.train_repeats is None and repeats is not None:
            raise ValueError(f"bad point {part!r}: {task.name} points are plain integers")
        point = Difficulty(length, repeats)
        task.check_difficulty(point)
        points.append(point)
    if not points:
        raise ValueError("no points given")
    return points
