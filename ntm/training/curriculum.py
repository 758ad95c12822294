"""Curriculum: train on short sequences first, lengthen them as the error falls.

The state is one integer (the current stage), saved in every checkpoint, so a resumed run picks
up the same schedule. Stage s of S allows lengths up to lo + ceil(s (hi - lo) / S) (and repeats
likewise for repeat-copy); the last stage is the full training range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Curriculum:
    """lengths, repeats: the full training ranges; stages: how many steps to reach them;
    threshold: advance when bits/seq at the current stage's hardest point is below this."""

    lengths: tuple[int, int]
    repeats: tuple[int, int] | None
    stages: int
    threshold: float = 0.5

    def ranges(self, stage: int) -> tuple[tuple[int, int], tuple[int, int] | None]:
        """The (lengths, repeats) ranges sampled at ``stage`` (1-based, clamped to the last)."""
        stage = min(max(stage, 1), self.stages)
        return _grow(self.lengths, stage, self.stages), (
            _grow(self.repeats, stage, self.stages) if self.repeats else None)

    def is_last(self, stage: int) -> bool:
        return stage >= self.stages

    def next_stage(self, stage: int, error: float) -> int:
        """The stage after an evaluation that measured ``error`` bits/seq at the current one."""
        if error < self.threshold and not self.is_last(stage):
            return stage + 1
        return stage


def _grow(full: tuple[int, int], stage: int, stages: int) -> tuple[int, int]:
    low, high = full
    return low, low + math.ceil(stage * (high - low) / stages)
