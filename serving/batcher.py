"""Dynamic batching: concurrent requests to one model merged into one onnxruntime run.

Like Triton's ``dynamic_batching``: a batch closes when it holds ``max_batch_size``
sequences or when its first request has waited ``max_queue_delay`` seconds. Sequences of
different lengths are right-padded (the model is causal, so padding after a sequence never
changes its outputs) and each caller gets back exactly its own rows, trimmed to its length.
Runs happen in a thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from serving.errors import ServingError, Unprocessable
from serving.metrics import Metrics
from serving.runtime import ModelRuntime, pad_batch

Result = tuple[np.ndarray, np.ndarray]  # probabilities [time, out], attention [time, heads, N]


@dataclass
class _Job:
    sequences: list[np.ndarray]  # each [time, input_size]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


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
    """

    def __init__(self, runtime: ModelRuntime, executor: Executor, metrics: Metrics,
                 max_batch_size: int = 64, max_queue_delay: float = 0.002, enabled: bool = True,
                 max_in_flight: int = 1):
        self.runtime = runtime
        self.executor = executor
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.enabled = enabled
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._carry: _Job | None = None
        self._closing = False
        self._slots = asyncio.Semaphore(max_in_flight)
        self._running: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.enabled:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._loop(), name=f"batcher-{self.runtime.name}")

    async def close(self) -> None:
        """Finish every queued job, then stop."""
        self._closing = True
        if self._worker is not None:
            while (self._queue and not self._queue.empty()) or self._carry is not None \
                    or self._running:
                await asyncio.sleep(0.005)
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def submit(self, sequences: list[np.ndarray]) -> list[Result]:
        """Run ``sequences`` (each [time, input_size], validated) and return their outputs."""
        if len(sequences) > self.max_batch_size:
            raise Unprocessable(f"{len(sequences)} sequences in one request; the limit is "
                                f"{self.max_batch_size} (max batch size)")
        if self._closing:
            raise ServingError("server is shutting down", status=503)
        loop = asyncio.get_running_loop()
        job = _Job(sequences, loop.create_future())
        if not self.enabled:
            self._observe_queue([job])
            return await loop.run_in_executor(self.executor, self._run, [job])
        assert self._queue is not None, "Batcher.start() was not awaited"
        await self._queue.put(job)
        return await job.future

    # -- internals --------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            jobs = await self._collect()
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
        offset = 0
        for job in jobs:
            n = len(job.sequences)
            if not job.future.done():  # the caller may have gone away
                job.future.set_result(results[offset: offset + n])
            offset += n

    async def _collect(self) -> list[_Job]:
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        jobs, size = [first], len(first.sequences)
        deadline = first.queued_at + self.max_queue_delay
        while size < self.max_batch_size:
            try:
                if self._queue.empty():
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                else:
                    job = self._queue.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if job.future.done():  # cancelled while queued (client disconnected)
                continue
            if size + len(job.sequences) > self.max_batch_size:
                self._carry = job
                break
            jobs.append(job)
            size += len(job.sequences)
        return jobs

    def _observe_queue(self, jobs: list[_Job]) -> None:
        now = time.perf_counter()
        for job in jobs:
            self.metrics.queue_time.labels(self.runtime.name).observe(now - job.queued_at)

    def _run(self, jobs: list[_Job]) -> list[Result]:
        sequences = [s for job in jobs for s in job.sequences]
        self.metrics.batch_size.labels(self.runtime.name).observe(len(sequences))
        start = time.perf_counter()
        probs, attention = self.runtime.run(pad_batch(sequences))
        self.metrics.inference.labels(self.runtime.name).observe(time.perf_counter() - start)
        return [(probs[i, : s.shape[0]], attention[i, : s.shape[0]])
                for i, s in enumerate(sequences)]
