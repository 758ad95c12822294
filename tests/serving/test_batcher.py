"""The batcher on its own: merged batches, and several of them running at once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batcher import Batcher
from serving.metrics import Metrics


class SlowRuntime:
    """Stands in for ModelRuntime: doubles its inputs and counts the runs under way at once.

    A run waits until ``together`` runs are under way (a barrier, so runs meant to be side by
    side are seen to be, however busy the machine), then takes 0.2 s, long enough for a run
    that should have waited to be seen overlapping."""

    name = "slow"

    def __init__(self, together: int):
        self.batch_sizes: list[int] = []
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(together, timeout=60)

    def run(self, x: np.ndarray):
        with self._lock:
            self.batch_sizes.append(len(x))
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        self._barrier.wait()
        time.sleep(0.2)
        with self._lock:
            self._running -= 1
        return 2 * x, np.zeros(x.shape[:2] + (1, 1), np.float32)


async def submit_all(batcher: Batcher, count: int) -> list:
    await batcher.start()
    results = await asyncio.gather(*[
        batcher.submit([np.full((3, 2), i, np.float32)]) for i in range(count)])
    await batcher.close()
    return results


@pytest.mark.parametrize("in_flight", [1, 2])
def test_batches_run_side_by_side_up_to_max_in_flight(in_flight):
    runtime = SlowRuntime(together=in_flight)
    with ThreadPoolExecutor(2) as executor:
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=2, max_queue_delay=0.0,
                          max_in_flight=in_flight)
        results = asyncio.run(submit_all(batcher, 4))
    assert runtime.batch_sizes == [2, 2]  # four requests merged in pairs
    for i, [(probabilities, _)] in enumerate(results):
        np.testing.assert_array_equal(probabilities, np.full((3, 2), 2 * i))
    assert runtime.most_at_once == in_flight  # two batches: after one another, or at once
