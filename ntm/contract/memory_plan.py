"""How many memory rows a request runs with (NumPy-free, TensorFlow-free: the serving side and
the exporter share it).

A model trained with N0 memory rows runs with N0 * 2**k rows, its "buckets" (128, 256, 512,
1024, 2048 for the paper's N0 = 128): the smallest bucket that holds what the request must store
(``Task.memory_rows``). Few distinct sizes keep dynamic batching useful, since only requests of
one size can share a run. The learned weights do not depend on N, except the initial weighting
(extended by ``ntm.model.cell.extend_initial_logits``).
"""

from __future__ import annotations

from ntm.contract.errors import NtmError

DEFAULT_MAX_MEMORY_SIZE = 2048  # rows; attention outputs grow as time x heads x N


class MemoryLimitExceeded(ValueError, NtmError):
    """A request needs more rows than the largest memory allowed; the message names both."""

    def __init__(self, needed: int, maximum: int):
        super().__init__(f"needs {needed} memory rows; the limit is {maximum} "
                         f"(--max-memory-size)")
        self.needed = needed
        self.maximum = maximum


def memory_buckets(trained: int, maximum: int = DEFAULT_MAX_MEMORY_SIZE) -> list[int]:
    """[trained, 2 trained, 4 trained, ...] up to ``maximum`` (always at least ``trained``)."""
    sizes = [trained]
    while sizes[-1] * 2 <= maximum:
        sizes.append(sizes[-1] * 2)
    return sizes


def choose_memory_size(rows_needed: int, trained: int,
                       maximum: int = DEFAULT_MAX_MEMORY_SIZE) -> int:
    """The smallest bucket with at least ``rows_needed`` rows.

    Raises MemoryLimitExceeded when even the largest bucket (<= ``maximum``) is too small.
    """
    for size in memory_buckets(trained, maximum):
        if size >= rows_needed:
            return size
    raise MemoryLimitExceeded(rows_needed, memory_buckets(trained, maximum)[-1])


# The longest input a bucket can be said to hold: the exported graph keeps the limits as int32.
UNLIMITED_STEPS = 2 ** 31 - 1


def longest_input(rows: int, rows_for_time_steps) -> int:
    """The most time steps whose ``rows_for_time_steps(T)`` (a task's
    ``memory_rows_for_time_steps``, non-decreasing in T) still fits in ``rows`` rows; 0 when
    not even one step fits; UNLIMITED_STEPS when every length fits (a task whose rows do not
    grow with the input, such as N-grams)."""
    if rows_for_time_steps(1) > rows:
        return 0
    if rows_for_time_steps(UNLIMITED_STEPS) <= rows:
        return UNLIMITED_STEPS
    lo, hi = 1, 2
    while rows_for_time_steps(hi) <= rows:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # rows_for(lo) fits, rows_for(hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if rows_for_time_steps(mid) <= rows else (lo, mid)
    return lo


def bucket_table(trained: int, rows_for_time_steps, maximum: int = DEFAULT_MAX_MEMORY_SIZE
                 ) -> tuple[list[int], list[int]]:
    """(buckets, the longest input of each) for choosing rows inside an exported graph: an input
    of T time steps runs with the first bucket whose longest input is >= T, as
    ``choose_memory_size`` would choose for ``rows_for_time_steps(T)`` rows."""
    buckets = memory_buckets(trained, maximum)
    return buckets, [longest_input(b, rows_for_time_steps) for b in buckets]
