"""The batcher on its own: merged batches, and several of them running at once."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batcher import Batcher
from serving.metrics import Metrics


class SlowRuntime:
    """Stands in for ModelRuntime: each run takes ``seconds`` and doubles its inputs."""

    name = "slow"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.batch_sizes: list[int] = []

    def run(self, x: np.ndarray):
        self.batch_sizes.append(len(x))
        time.sleep(self.seconds)
        return 2 * x, np.zeros(x.shape[:2] + (1, 1), np.float32)


async def submit_all(batcher: Batcher, count: int) -> tuple[list, float]:
    await batcher.start()
    start = time.perf_counter()
    results = await asyncio.gather(*[
        batcher.submit([np.full((3, 2), i, np.float32)]) for i in range(count)])
    elapsed = time.perf_counter() - start
    await batcher.close()
    return results, elapsed


@pytest.mark.parametrize("in_flight, least, most", [(1, 0.55, 5.0), (2, 0.0, 0.5)])
def test_batches_run_side_by_side_up_to_max_in_flight(in_flight, least, most):
    runtime = SlowRuntime(0.3)
    with ThreadPoolExecutor(2) as executor:
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=2, max_queue_delay=0.0,
                          max_in_flight=in_flight)
        results, elapsed = asyncio.run(submit_all(batcher, 4))
    assert runtime.batch_sizes == [2, 2]  # four requests merged in pairs
    for i, [(probabilities, _)] in enumerate(results):
        np.testing.assert_array_equal(probabilities, np.full((3, 2), 2 * i))
    assert least <= elapsed <= most, elapsed  # two 0.3 s batches: after one another, or at once
