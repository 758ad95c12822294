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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ntm.tasks import Difficulty, Task

TOLERANCE = 1e-4
NOISE_FACTOR = 4.0
PERTURBATION = 1e-6

Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # -> probabilities, attention


@dataclass(frozen=True)
class Comparison:
    label: str  # e.g. "length 40"
    time_steps: int
    batch: int
    probabilities_diff: float
    attention_diff: float
    noise_floor: float = 0.0  # max |TF(x) - TF(x +- PERTURBATION)|: TensorFlow's sensitivity

    @property
    def tolerance(self) -> float:
        return max(TOLERANCE, NOISE_FACTOR * self.noise_floor)

    @property
    def passed(self) -> bool:
        return self.probabilities_diff <= self.tolerance

    def as_dict(self) -> dict:
        """The record kept in the ONNX metadata and the model card."""
        return {"point": self.label, "time_steps": self.time_steps,
                "max_abs_diff": self.probabilities_diff, "noise_floor": self.noise_floor,
                "tolerance": self.tolerance}


def verification_points(task: Task, fixed_length: int | None) -> list[Difficulty]:
    """Shortest, longest trained, and twice the longest; for a fixed-length export, the
    points whose sequences fit (they are right-padded to the fixed length)."""
    lo, hi = task.train_lengths
    if task.train_repeats is None:
        candidates = [Difficulty(lo), Difficulty(hi), Difficulty(2 * hi)]
        extra = [Difficulty(n) for n in range(lo, 4 * hi)]
    else:
        rlo, rhi = task.train_repeats
        candidates = [Difficulty(lo, rlo), Difficulty(hi, rhi), Difficulty(2 * hi, rhi)]
        extra = [Difficulty(n, r) for n in range(lo, 2 * hi + 1) for r in (rlo, rhi)]
    if fixed_length is None:
        return candidates
    fitting = [p for p in candidates + extra if task.time_steps(p) <= fixed_length]
    if not fitting:
        return []
    longest = max(fitting, key=task.time_steps)
    shortest = min(fitting, key=task.time_steps)
    return list(dict.fromkeys([shortest, longest]))


def pad_time(inputs: np.ndarray, length: int) -> np.ndarray:
    """Right-pad [batch, time, width] with zeros to ``length`` time steps."""
    pad = length - inputs.shape[1]
    return np.pad(inputs, ((0, 0), (0, pad), (0, 0))) if pad > 0 else inputs


def compare(reference: Forward, candidate: Forward, task: Task, points: list[Difficulty],
            fixed_length: int | None = None, batch: int = 8, seed: int = 99) -> list[Comparison]:
    """Run both on the same fresh inputs at each point; report the differences."""
    out = []
    for point in points:
        rng = np.random.default_rng([seed, point.length, point.repeats or 0])
        x = task.fixed_batch(rng, batch, point).inputs
        if fixed_length is not None:
            x = pad_time(x, fixed_length)
        p_ref, a_ref = reference(x)
        p_new, a_new = candidate(x)
        signs = np.random.default_rng([seed, 1]).choice([-1.0, 1.0], size=x.shape)
        p_moved = reference((x + PERTURBATION * signs).astype(np.float32))[0]
        t = task.time_steps(point)
        out.append(Comparison(
            label=f"{task.length_name} {point.label()}", time_steps=t, batch=batch,
            probabilities_diff=float(np.abs(p_ref[:, :t] - p_new[:, :t]).max()),
            attention_diff=float(np.abs(a_ref[:, :t] - a_new[:, :t]).max()),
            noise_floor=float(np.abs(p_ref[:, :t] - p_moved[:, :t]).max())))
    return out
