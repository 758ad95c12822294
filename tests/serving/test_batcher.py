"""The batcher on its own: merged batches, and several of them running at once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ntm.serving.batcher import Batcher
from ntm.serving.metrics import Metrics


class OneThread:
    """What a stand-in for ModelRuntime says about threads: every run on one."""

    def threads_for(self, batch: int) -> int:
        return 1

    def threads_used(self, batch: int, granted: int | None = None) -> int:
        return 1


class SlowRuntime(OneThread):
    """Stands in for ModelRuntime: doubles its inputs and counts the runs under way at once.

    A run waits until ``together`` runs are under way (a barrier, so runs meant to be side by
    side are seen to be, however busy the machine), then takes 0.2 s, long enough for a run
    that should have waited to be seen overlapping."""

    name = "slow"
    trained_memory_size = 128

    def __init__(self, together: int):
        self.batch_sizes: list[int] = []
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(together, timeout=60)

    def run_checked(self, x: np.ndarray, memory_size=None, threads=None, attention=True):
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
        batcher.submit(np.full((1, 3, 2), i, np.float32)) for i in range(count)])
    await batcher.close()
    return results


@pytest.mark.parametrize("in_flight", [1, 2])
def test_batches_run_side_by_side_up_to_max_in_flight(in_flight):
    runtime = SlowRuntime(together=in_flight)
    with ThreadPoolExecutor(2) as executor:
        # Batches close when full (the delay is far longer than submitting four jobs takes).
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=2, max_queue_delay=30.0,
                          max_in_flight=in_flight)
        results = asyncio.run(submit_all(batcher, 4))
    assert runtime.batch_sizes == [2, 2]  # four requests merged in pairs
    for i, (probabilities, _) in enumerate(results):
        np.testing.assert_array_equal(probabilities, np.full((1, 3, 2), 2 * i))
    assert runtime.most_at_once == in_flight  # two batches: after one another, or at once


class GatedRuntime(OneThread):
    """Stands in for ModelRuntime: its first run waits until ``release`` is set; records the
    size of every run and the most runs under way at once."""

    name = "gated"
    trained_memory_size = 128

    def __init__(self):
        self.release = threading.Event()
        self.batch_sizes: list[int] = []
        self.most_at_once = 0
        self._running = 0
        self._lock = threading.Lock()

    def run_checked(self, x: np.ndarray, memory_size=None, threads=None, attention=True):
        with self._lock:
            first = not self.batch_sizes
            self.batch_sizes.append(len(x))
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        if first:
            assert self.release.wait(60)
        with self._lock:
            self._running -= 1
        return x, np.zeros(x.shape[:2] + (1, 1), np.float32)


def test_a_second_batch_runs_alongside_only_when_the_waiting_jobs_fill_it():
    """Two threads, batches of 4: while a run is under way, three waiting jobs wait for it and
    then run as one batch (not split into two smaller ones); four waiting jobs run alongside."""
    runtime = GatedRuntime()

    async def until(condition):
        while not condition():  # observable state, polled; no fixed sleep
            await asyncio.sleep(0.001)

    async def scenario(waiting: int):
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=4, max_queue_delay=0.0,
                          max_in_flight=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.zeros((1, 2, 3), np.float32)))
        await until(lambda: runtime.batch_sizes)  # the first run is under way, held
        rest = [asyncio.ensure_future(batcher.submit(np.zeros((1, 2, 3), np.float32)))
                for _ in range(waiting)]
        if waiting < 4:
            await until(lambda: batcher._lanes[None].queued == waiting)
            assert runtime.batch_sizes == [1]  # queued, not started
        else:
            await until(lambda: len(runtime.batch_sizes) == 2)  # started while held
        runtime.release.set()
        await asyncio.gather(first, *rest)
        await batcher.close()

    with ThreadPoolExecutor(1) as executor:
        asyncio.run(asyncio.wait_for(scenario(3), 60))
        assert runtime.batch_sizes == [1, 3] and runtime.most_at_once == 1
        runtime.__init__()
        asyncio.run(asyncio.wait_for(scenario(4), 60))
        assert runtime.batch_sizes == [1, 4] and runtime.most_at_once == 2


class RowsRuntime(OneThread):
    """Stands in for ModelRuntime: records (sequences, memory rows) of every run."""

    name = "rows"
    trained_memory_size = 16

    def __init__(self):
        self.runs: list[tuple[int, int | None]] = []
        self.attention: list[bool] = []  # whether each run fetched the attention

    def run_checked(self, x: np.ndarray, memory_size=None, threads=None, attention=True):
        self.runs.append((len(x), memory_size))
        self.attention.append(attention)
        return x, (np.zeros(x.shape[:2] + (1, memory_size or 16), np.float32) if attention
                   else None)


def test_only_requests_with_the_same_rows_share_a_run_and_idle_lanes_hold_no_slot():
    """Three memory sizes, one slot: each lane takes the slot only when it has work, so none
    waits forever behind an idle lane; a large N merges fewer sequences (64 x 16 / N)."""
    runtime = RowsRuntime()

    async def scenario():
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=64,
                          max_queue_delay=0.05, max_in_flight=1)
        await batcher.start()
        sizes = [16, 32, 256, 16, 32, 256] + [512] * 5
        results = await asyncio.gather(*[
            batcher.submit(np.full((1, 2, 3), i, np.float32), n) for i, n in enumerate(sizes)])
        late = await batcher.submit(np.zeros((1, 2, 3), np.float32), 64)  # a fourth lane, later
        await batcher.close()
        return sizes, results, late

    with ThreadPoolExecutor(1) as executor:
        sizes, results, late = asyncio.run(asyncio.wait_for(scenario(), 60))
    for i, (n, (probabilities, attention)) in enumerate(zip(sizes, results)):
        np.testing.assert_array_equal(probabilities, np.full((1, 2, 3), i))
        assert attention.shape[-1] == n
    assert late[1].shape[-1] == 64
    per_size = {}
    for count, n in runtime.runs:
        per_size.setdefault(n, []).append(count)
    assert per_size[16] == [2] and per_size[32] == [2] and per_size[256] == [2]
    assert sorted(per_size[512]) == [1, 2, 2]  # at most 64 x 16 / 512 = 2 per merged run


def test_grouped_submission_returns_results_in_request_order():
    runtime = RowsRuntime()

    async def scenario():
        batcher = Batcher(runtime, executor, Metrics(), max_queue_delay=0.0)
        await batcher.start()
        runs = [(np.full((1, 1, 3), i, np.float32), n, True) for i, n in enumerate([32, 16, 64])]
        results = await batcher.submit_grouped(runs)
        await batcher.close()
        return results

    with ThreadPoolExecutor(1) as executor:
        results = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert [int(p[0, 0, 0]) for p, _ in results] == [0, 1, 2]
    assert [a.shape[-1] for _, a in results] == [32, 16, 64]


def test_a_job_is_run_whole_and_merged_jobs_are_padded_and_trimmed():
    """A job alone runs as it came (the same array object: no split, pad and restack); jobs of
    different lengths merge into one padded run and each gets back its own rows and steps."""
    runtime = RowsRuntime()
    seen = []
    run = runtime.run_checked
    runtime.run_checked = lambda x, n=None, threads=None, attention=True: (seen.append(x),
                                                                         run(x, n))[1]

    async def scenario():
        batcher = Batcher(runtime, executor, Metrics(), max_queue_delay=0.05)
        await batcher.start()
        alone = np.ones((3, 4, 2), np.float32)
        [first] = await asyncio.gather(batcher.submit(alone, 16))
        short, long = np.full((2, 1, 2), 5, np.float32), np.full((1, 3, 2), 7, np.float32)
        merged = await asyncio.gather(batcher.submit(short, 16), batcher.submit(long, 16))
        await batcher.close()
        return alone, first, merged

    with ThreadPoolExecutor(1) as executor:
        alone, first, ((p_short, _), (p_long, _)) = asyncio.run(
            asyncio.wait_for(scenario(), 60))
    assert seen[0] is alone and first[0].shape == (3, 4, 2)
    assert seen[1].shape == (3, 3, 2) and runtime.runs[1] == (3, 16)
    np.testing.assert_array_equal(p_short, np.full((2, 1, 2), 5))
    np.testing.assert_array_equal(p_long, np.full((1, 3, 2), 7))


def test_the_attention_is_fetched_only_when_a_job_of_the_run_wants_it():
    runtime = RowsRuntime()

    async def scenario():
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=2, max_queue_delay=30.0)
        await batcher.start()
        x = np.ones((1, 2, 3), np.float32)
        without = await asyncio.gather(batcher.submit(x, 16, False), batcher.submit(x, 16, False))
        mixed = await asyncio.gather(batcher.submit(x, 16, False), batcher.submit(x, 16, True))
        await batcher.close()
        return without, mixed

    with ThreadPoolExecutor(1) as executor:
        without, mixed = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runtime.runs == [(2, 16), (2, 16)] and runtime.attention == [False, True]
    assert [a for _, a in without] == [None, None]
    assert all(a is not None and a.shape == (1, 2, 1, 16) for _, a in mixed)


def test_a_job_cancelled_while_queued_never_runs_and_one_cancelled_while_running_is_skipped():
    """A client that hangs up: its job, if still queued, is dropped when the batch forms; if
    already running, its result is not handed to it. The other jobs are answered."""
    runtime = GatedRuntime()

    async def until(condition):
        while not condition():  # observable state, polled; no fixed sleep
            await asyncio.sleep(0.001)

    async def scenario():
        batcher = Batcher(runtime, executor, Metrics(), max_batch_size=4, max_queue_delay=0.0,
                          max_in_flight=1)
        await batcher.start()
        running = asyncio.ensure_future(batcher.submit(np.zeros((1, 2, 3), np.float32)))
        await until(lambda: runtime.batch_sizes)  # the first run is under way, held
        queued = [asyncio.ensure_future(batcher.submit(np.full((1, 2, 3), i, np.float32)))
                  for i in range(3)]
        await until(lambda: batcher._lanes[None].queued == 3)
        queued[1].cancel()  # hangs up while queued
        running.cancel()  # hangs up while its run is under way
        runtime.release.set()
        answers = await asyncio.gather(queued[0], queued[2])
        await batcher.close()
        return answers, running

    with ThreadPoolExecutor(1) as executor:
        answers, running = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert runtime.batch_sizes == [1, 2]  # the cancelled queued job was not run
    assert [int(p[0, 0, 0]) for p, _ in answers] == [0, 2]
    assert running.cancelled()
