"""The server's onnxruntime threads, planned per run: ``ThreadBudget``.

A merged batch of many sequences runs faster on two intra-op threads than on one, a small one
does not (docs/performance.md). Two batches side by side on one thread each do more work than one batch on
two, so a large batch takes the extra threads only when they are idle: every run holds one of
the server's ``--inference-threads``, and a large one also the idle ones it can use. A run
never waits for extra threads; the next run waits while a large one holds them all. Off by
default (``--large-batch-threads 1``): onnxruntime's extra thread spins between operators, and
under many clients that CPU is missed elsewhere.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class ThreadBudget:
    """``total`` threads shared by every onnxruntime run of one server process.

    ``run(wanted)`` waits for one thread, takes up to ``wanted - 1`` more that are idle and
    yields how many it holds; they are returned when the block ends.
    """

    def __init__(self, total: int):
        if total < 1:
            raise ValueError(f"a thread budget needs at least 1 thread, got {total}")
        self._free = total
        self._idle = threading.Condition()

    @property
    def free(self) -> int:
        """Threads no run holds now."""
        with self._idle:
            return self._free

    @contextmanager
    def run(self, wanted: int = 1) -> Iterator[int]:
        with self._idle:
            self._idle.wait_for(lambda: self._free > 0)
            held = min(max(wanted, 1), self._free)
            self._free -= held
        try:
            yield held
        finally:
            self.give_back(held)

    def take_idle(self, wanted: int) -> int:
        """Take up to ``wanted`` threads that are idle now, without waiting; returns how many
        (give them back with ``give_back``). For a run that already holds one (``run(1)``) and
        learns its size only later: the batcher collects a batch while holding its thread."""
        with self._idle:
            taken = min(max(wanted, 0), self._free)
            self._free -= taken
            return taken

    def give_back(self, count: int) -> None:
        with self._idle:
            self._free += count
            self._idle.notify_all()
