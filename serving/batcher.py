"""Dynamic batching: concurrent requests to one model merged into one onnxruntime run.

Like Triton's ``dynamic_batching``: a batch closes when it holds ``max_batch_size``
sequences or when its first request has waited ``max_queue_delay`` seconds. A job is one array
of checked inputs [batch, time, input_size], kept whole: a job that runs alone runs as it came,
and jobs of different lengths are right-padded into one array (the model is causal, so padding
after a sequence never changes its outputs). Each caller gets back its own rows, trimmed to
its length. Runs happen in a thread pool, off the event loop.

Only requests with the same number of memory rows N can share a run, so each N has its own
queue (a "lane"); the lanes share the limit on batches in flight. A merged batch at N rows
holds at most ``max_batch_size * N0 / N`` sequences (N0: the trained rows), as its memory and
attention grow with N; one request alone may still hold ``max_batch_size``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ntm.serving.errors import ServingError, Unprocessable
from ntm.serving.metrics import Metrics
from ntm.serving.runtime import ModelRuntime
from ntm.serving.threads import ThreadBudget

# probabilities [batch, time, out], attention [batch, time, heads, N]
Result = tuple[np.ndarray, np.ndarray]


@dataclass
class _Job:
    inputs: np.ndarray  # [batch, time, input_size], checked
    future: asyncio.Future
    memory_size: int | None = None  # rows to run with (None: the runtime chooses)
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Lane:
    """The queue of jobs for one memory size, and the task that batches them."""

    queue: asyncio.Queue
    limit: int  # most sequences in a merged batch
    carry: _Job | None = None
    worker: asyncio.Task | None = None


class Batcher:
    """Queues jobs for one model and runs them in merged batches.

    Args:
        runtime: the model.
        executor: where onnxruntime runs (a thread pool).
        max_batch_size: most sequences in one run; also the most one request may hold.
        max_queue_delay: seconds the first job of a batch may wait for others (0: take only
            what is already queued).
        enabled: False runs every job alone, as it arrives (for comparison).
        max_in_flight: batches run at once (the next one forms and starts while earlier ones
            run; at most the executor's threads are useful).
        threads: the server's onnxruntime threads, shared with its other models [default:
            ``max_in_flight`` of this batcher's own]; a large batch takes the idle ones.
    """

    def __init__(self, runtime: ModelRuntime, executor: Executor, metrics: Metrics,
                 max_batch_size: int = 64, max_queue_delay: float = 0.002, enabled: bool = True,
                 max_in_flight: int = 1, threads: ThreadBudget | None = None):
        self.runtime = runtime
        self.executor = executor
        self.threads = threads or ThreadBudget(max_in_flight)
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.enabled = enabled
        self._lanes: dict[int | None, _Lane] = {}
        self._pending: set[asyncio.Future] = set()  # every submitted job not yet answered
        self._started = False
        self._closing = False
        self._slots = asyncio.Semaphore(max_in_flight)
        self._running: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._started = True

    async def close(self) -> None:
        """Finish every submitted job, then stop."""
        self._closing = True
        while self._pending or self._running:
            await asyncio.sleep(0.005)
        for lane in self._lanes.values():
            lane.worker.cancel()
            try:
                await lane.worker
            except asyncio.CancelledError:
                pass

    async def submit(self, inputs: np.ndarray, memory_size: int | None = None) -> Result:
        """Run ``inputs`` (float32 [batch, time, input_size], already checked) with
        ``memory_size`` rows [default: the runtime's choice for the batch] and return their
        outputs, [batch, time, ...] each."""
        self._check_request_size(len(inputs))
        if self._closing:
            raise ServingError("server is shutting down", status=503)
        loop = asyncio.get_running_loop()
        job = _Job(inputs, loop.create_future(), memory_size)
        if not self.enabled:
            self._observe_queue([job])
            return (await loop.run_in_executor(self.executor, self._run, [job]))[0]
        assert self._started, "Batcher.start() was not awaited"
        self._pending.add(job.future)
        job.future.add_done_callback(self._pending.discard)
        await self._lane(memory_size).queue.put(job)
        return await job.future

    async def submit_grouped(self, runs: Sequence[tuple[np.ndarray, int]]) -> list[Result]:
        """``submit`` for one request whose sequences need different memory rows: (inputs,
        rows) per size, each to its own lane, side by side; results in the order of ``runs``."""
        self._check_request_size(sum(len(x) for x, _ in runs))  # the whole request
        return list(await asyncio.gather(*(self.submit(x, rows) for x, rows in runs)))

    def _check_request_size(self, sequences: int) -> None:
        if sequences > self.max_batch_size:
            raise Unprocessable(f"{sequences} sequences in one request; the limit is "
                                f"{self.max_batch_size} (max batch size)")

    def _lane(self, memory_size: int | None) -> _Lane:
        """The lane of ``memory_size``, made (with its worker) on first use."""
        if memory_size not in self._lanes:
            trained = getattr(self.runtime, "trained_memory_size", None)
            limit = self.max_batch_size
            if memory_size and trained:
                limit = max(1, self.max_batch_size * trained // memory_size)
            lane = _Lane(asyncio.Queue(), limit)
            lane.worker = asyncio.create_task(
                self._loop(lane), name=f"batcher-{self.runtime.name}-{memory_size}")
            self._lanes[memory_size] = lane
        return self._lanes[memory_size]

    # -- internals --------------------------------------------------------------------------
    async def _loop(self, lane: _Lane) -> None:
        while True:
            # A slot is taken only once this lane has work: an idle lane never holds one that
            # another lane needs. Jobs that arrive while it waits join its batch.
            first = lane.carry or await lane.queue.get()
            lane.carry = None
            await self._slots.acquire()
            jobs = await self._collect(lane, first)
            self._observe_queue(jobs)
            task = asyncio.create_task(self._run_jobs(jobs))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._slots.release()

    async def _run_jobs(self, jobs: list[_Job]) -> None:
        """Run ``jobs`` as one batch and hand each its rows. When a merged batch fails, each
        job is run again alone, so a request that breaks the model fails by itself and the
        others still get their answers."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self._run, jobs)
        except Exception as err:  # never let the worker die
            if len(jobs) > 1:
                for job in jobs:
                    await self._run_jobs([job])
                return
            if not isinstance(err, ServingError):
                err = ServingError(f"inference failed: {err}", 500)
            if not jobs[0].future.done():
                jobs[0].future.set_exception(ServingError(err.message, err.status))
            return
        for job, result in zip(jobs, results):
            if not job.future.done():  # the caller may have gone away
                job.future.set_result(result)

    async def _collect(self, lane: _Lane, first: _Job) -> list[_Job]:
        jobs, size = [first], len(first.inputs)
        deadline = first.queued_at + self.max_queue_delay
        while size < lane.limit:
            try:
                if lane.queue.empty():
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    job = await asyncio.wait_for(lane.queue.get(), remaining)
                else:
                    job = lane.queue.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if job.future.done():  # cancelled while queued (client disconnected)
                continue
            if size + len(job.inputs) > lane.limit:
                lane.carry = job
                break
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    def _observe_queue(self, jobs: list[_Job]) -> None:
        now = time.perf_counter()
        for job in jobs:
            self.metrics.queue_time.labels(self.runtime.name).observe(now - job.queued_at)

    def _run(self, jobs: list[_Job]) -> list[Result]:
        x = merge([job.inputs for job in jobs])
        self.metrics.batch_size.labels(self.runtime.name).observe(len(x))
        with self.threads.run(self.runtime.threads_for(len(x))) as held:
            start = time.perf_counter()
            probs, attention = self.runtime.run_checked(x, jobs[0].memory_size, held)
            self.metrics.inference.labels(self.runtime.name).observe(time.perf_counter() - start)
        self.metrics.runs.labels(self.runtime.name,
                                 str(self.runtime.threads_used(len(x), held))).inc()
        results, offset = [], 0
        for job in jobs:
            rows, steps = job.inputs.shape[:2]
            results.append((probs[offset: offset + rows, :steps],
                            attention[offset: offset + rows, :steps]))
            offset += rows
        return results


def merge(batches: list[np.ndarray]) -> np.ndarray:
    """[batch_i, time_i, width] arrays -> one [sum of batch_i, longest time, width], each
    right-padded with zeros; a single array is returned as it is."""
    if len(batches) == 1:
        return batches[0]
    longest = max(b.shape[1] for b in batches)
    out = np.zeros((sum(len(b) for b in batches), longest, batches[0].shape[2]), np.float32)
    offset = 0
    for b in batches:
        out[offset: offset + len(b), : b.shape[1]] = b
        offset += len(b)
    return out
