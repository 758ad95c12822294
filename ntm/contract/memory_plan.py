"""How many memory rows a request runs with (NumPy-free, TensorFlow-free: the serving side and
the exporter share it).

A model trained with N0 memory rows runs with N0 * 2**k rows, its "buckets" (128, 256, 512,
1024, 2048 for the paper's N0 = 128): the smallest bucket that holds what the request must store
(``Task.memory_rows``). Few distinct sizes keep dynamic batching useful, since only requests of
one size can share a run. The learned weights do not depend on N, except the initial weighting
(extended by ``ntm.cell.extend_initial_logits``).
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
