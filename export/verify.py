"""Proof that an export computes what the TensorFlow model computes.

Fresh task inputs at several lengths (inside and beyond the training range) go through both;
the largest absolute difference of output probabilities must stay within the tolerance.

The tolerance is TOLERANCE (1e-4), or more where the model itself is ill-conditioned: driven
past its training range a model can be chaotic, and there the float32 rounding differences
between two correct engines (about one unit in the last place per operation, every step) grow
beyond 1e-4. Each point therefore also measures TensorFlow's own sensitivity: the largest change
of its outputs when every input value moves by +-PERTURBATION (1e-6, a few units in the last
place), called the point's noise floor; the export may differ by at most NOISE_FACTOR times it.
Where the model is well conditioned (copy and recall at every tested length) the floor is
~1e-6 and the bound stays 1e-4; a conversion error shows up there, far above it.

A dynamic export is also proven with more memory rows than it was trained with: at the shortest
sequence that needs twice the trained rows (a task whose rows never grow: its longest training
sequence), both run with that many rows. A network without memory (the LSTM baseline) has no
rows to grow: its points have none (``memory_size`` None) and its exports no attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ntm.contract.memory_plan import UNLIMITED_STEPS
from ntm.contract.tasks import Difficulty, Task

TOLERANCE = 1e-4
NOISE_FACTOR = 4.0
PERTURBATION = 1e-6

# (inputs [batch, time, in], memory rows N or None) -> probabilities, attention (or None)
Forward = Callable[[np.ndarray, int | None], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class ProofPoint:
    """Where the export is compared: a difficulty, run with ``memory_size`` rows (None: a
    network without memory)."""

    difficulty: Difficulty
    memory_size: int | None

    def label(self, task: Task) -> str:
        """e.g. "length 40, 128 rows" ("length 40" without memory)."""
        rows = "" if self.memory_size is None else f", {self.memory_size} rows"
        return f"{task.length_name} {self.difficulty.label()}{rows}"


@dataclass(frozen=True)
class Comparison:
    label: str  # e.g. "length 40"
    time_steps: int
    batch: int
    probabilities_diff: float
    attention_diff: float | None  # None: the candidate has no attention output
    noise_floor: float = 0.0  # max |TF(x) - TF(x +- PERTURBATION)|: TensorFlow's sensitivity
    memory_size: int | None = 0  # rows both ran with (None: a network without memory)

    @property
    def tolerance(self) -> float:
        return max(TOLERANCE, NOISE_FACTOR * self.noise_floor)

    @property
    def passed(self) -> bool:
        return self.probabilities_diff <= self.tolerance

    def as_dict(self) -> dict:
        """The record kept in the ONNX metadata and the model card."""
        return {"point": self.label, "time_steps": self.time_steps,
                "memory_size": self.memory_size,
                "max_abs_diff": self.probabilities_diff, "noise_floor": self.noise_floor,
                "tolerance": self.tolerance}


def verification_points(task: Task, fixed_length: int | None, trained_rows: int | None,
                        fixed_rows: int | None = None) -> list[ProofPoint]:
    """Shortest, longest trained, and twice the longest, at the trained rows; for a dynamic
    export also the shortest sequence that needs twice the trained rows, run with that many.
    For a fixed-length export, the points whose sequences fit (they are right-padded to the
    fixed length), at its fixed rows. ``trained_rows`` None: a network without memory (no rows,
    none grown)."""
    lo, hi = task.train_lengths
    if task.train_repeats is None:
        candidates = [Difficulty(lo), Difficulty(hi), Difficulty(2 * hi)]
        extra = [Difficulty(n) for n in range(lo, 4 * hi)]
    else:
        rlo, rhi = task.train_repeats
        candidates = [Difficulty(lo, rlo), Difficulty(hi, rhi), Difficulty(2 * hi, rhi)]
        extra = [Difficulty(n, r) for n in range(lo, 2 * hi + 1) for r in (rlo, rhi)]
    longest_trained = candidates[1]
    candidates = list(dict.fromkeys(candidates))  # one length trained (priority sort): once
    if fixed_length is None and trained_rows is None:
        return [ProofPoint(d, None) for d in candidates]
    if fixed_length is None:
        # A task whose rows never grow (N-grams) still gets the grown graph proven, on its
        # longest training sequence.
        grown = growth_point(task, trained_rows) or longest_trained
        return [ProofPoint(d, trained_rows) for d in candidates] + \
            [ProofPoint(grown, 2 * trained_rows)]
    fitting = [p for p in candidates + extra if task.time_steps(p) <= fixed_length]
    if not fitting:
        return []
    longest = max(fitting, key=task.time_steps)
    shortest = min(fitting, key=task.time_steps)
    return [ProofPoint(d, fixed_rows or trained_rows)
            for d in dict.fromkeys([shortest, longest])]


def growth_point(task: Task, trained_rows: int) -> Difficulty | None:
    """The shortest difficulty (fewest repeats) whose sequences need more than
    ``trained_rows`` memory rows; None when no length does (the task's rows do not grow)."""
    repeats = task.train_repeats[0] if task.train_repeats else None
    length = task.train_lengths[1]
    if task.memory_rows(Difficulty(UNLIMITED_STEPS, repeats)) <= trained_rows:
        return None
    while task.memory_rows(Difficulty(length, repeats)) <= trained_rows:
        length += 1
    return Difficulty(length, repeats)


def pad_time(inputs: np.ndarray, length: int) -> np.ndarray:
    """Right-pad [batch, time, width] with zeros to ``length`` time steps."""
    pad = length - inputs.shape[1]
    return np.pad(inputs, ((0, 0), (0, pad), (0, 0))) if pad > 0 else inputs


def compare(reference: Forward, candidate: Forward, task: Task, points: list[ProofPoint],
            fixed_length: int | None = None, batch: int = 8, seed: int = 99) -> list[Comparison]:
    """Run both on the same fresh inputs at each point; report the differences."""
    out = []
    for point in points:
        d = point.difficulty
        rng = np.random.default_rng([seed, d.length, d.repeats or 0])
        x = task.fixed_batch(rng, batch, d).inputs
        if fixed_length is not None:
            x = pad_time(x, fixed_length)
        p_ref, a_ref = reference(x, point.memory_size)
        p_new, a_new = candidate(x, point.memory_size)
        t = task.time_steps(d)
        out.append(Comparison(
            label=point.label(task), time_steps=t,
            batch=batch, memory_size=point.memory_size,
            probabilities_diff=float(np.abs(p_ref[:, :t] - p_new[:, :t]).max()),
            attention_diff=None if a_new is None else float(
                np.abs(a_ref[:, :t] - a_new[:, :t]).max()),
            noise_floor=noise_floor(reference, x, point.memory_size, t, p_ref, seed)))
    return out


def noise_floor(reference: Forward, x: np.ndarray, memory_size: int | None, time_steps: int,
                p_ref: np.ndarray, seed: int = 99) -> float:
    """TensorFlow's own sensitivity on these very sequences: the largest change of its
    probabilities ``p_ref`` (of ``x`` [batch, time, in]) over the first ``time_steps`` steps
    when every input value moves by +-PERTURBATION. It differs from sequence to sequence
    where the model is chaotic, so it is measured on the sequences compared."""
    signs = np.random.default_rng([seed, 1]).choice([-1.0, 1.0], size=x.shape)
    p_moved = reference((x + PERTURBATION * signs).astype(np.float32), memory_size)[0]
    return float(np.abs(p_ref[:, :time_steps] - p_moved[:, :time_steps]).max())


# -- stateful exports -----------------------------------------------------------------------
# (inputs, memory rows N or None, start?, state [batch, S]) -> probabilities, attention (or
# None), state_out
StatefulForward = Callable[[np.ndarray, int | None, bool, np.ndarray],
                           tuple[np.ndarray, np.ndarray | None, np.ndarray]]
CHUNKS = 3  # a stateful export is proven run in this many calls per sequence
CHUNK_TOLERANCE = 1e-5  # chunked and one-shot runs of the same export may differ by this


def chunk_bounds(time_steps: int, chunks: int = CHUNKS) -> list[tuple[int, int]]:
    """``chunks`` consecutive non-empty [start, end) ranges covering ``time_steps`` (fewer when
    there are fewer steps), of uneven lengths so no chunk boundary is special."""
    cuts = sorted({round(time_steps * f) for f in (0.0, 0.3, 0.7)[:chunks]} | {time_steps})
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def chunked(forward: StatefulForward, chunks: int = CHUNKS) -> Forward:
    """A Forward that runs each sequence as ``chunks`` calls, the state carried between them."""
    def run(x: np.ndarray, memory_size: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        state = np.zeros((1, 0), np.float32)
        probabilities, attention = [], []
        for i, (a, b) in enumerate(chunk_bounds(x.shape[1], chunks)):
            p, att, state = forward(x[:, a:b], memory_size, i == 0, state)
            probabilities.append(p)
            attention.append(att)
        whole_attention = None if attention[0] is None else np.concatenate(attention, axis=1)
        return np.concatenate(probabilities, axis=1), whole_attention
    return run


def one_shot(forward: StatefulForward) -> Forward:
    """A Forward that runs each sequence as one call from a fresh start."""
    def run(x: np.ndarray, memory_size: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        p, att, _ = forward(x, memory_size, True, np.zeros((1, 0), np.float32))
        return p, att
    return run
