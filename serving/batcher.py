"""Dynamic batching: concurrent requests to one model merged into one onnxruntime run.

Like Triton's ``dynamic_batching``: a batch closes when it holds ``max_batch_size``
sequences or when its first request has waited ``max_queue_delay`` seconds. A job is one array
of checked inputs [batch, time, input_size], kept whole: a job that runs alone runs as it came,
and jobs of different lengths are right-padded into one array (the model is causal, so padding
after a sequence never changes its outputs). Each caller gets back its own rows, trimmed to
its length.

Only requests with the same number of memory rows N can share a run, so each N has its own
queue (a "lane"); the lanes share the limit on batches in flight. A merged batch at N rows
holds at most ``max_batch_size * N0 / N`` sequences (N0: the trained rows), as its memory and
attention grow with N; one request alone may still hold ``max_batch_size``.

Batches form and run in the batcher's own threads (``max_in_flight`` of them), off the event
loop: a thread that finishes a run takes the next batch at once from the jobs queued
meanwhile, and wakes the event loop once per run to hand out the results. (Formed on the event
loop, the next batch waited until the loop had also answered the last batch's HTTP requests,
and onnxruntime sat idle meanwhile.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from ntm.serving.codec import Result
from ntm.serving.errors import ServingError, Unprocessable
from ntm.serving.metrics import Metrics
from ntm.serving.threads import ThreadBudget


class BatchRuntime(Protocol):
    """What the batcher needs of a model (``ntm.serving.runtime.ModelRuntime`` has it)."""

    name: str
    trained_memory_size: int | None  # N0: a batch at N rows holds max_batch_size N0 / N

    def threads_for(self, batch: int) -> int: ...

    def threads_used(self, batch: int, granted: int | None = None) -> int: ...

    def run_checked(self, x: np.ndarray, memory_size: int | None = None,
                    threads: int | None = None, attention: bool = True) -> Result: ...


@dataclass
class _Job:
    inputs: np.ndarray  # [batch, time, input_size], checked
    future: asyncio.Future  # set on the event loop only
    memory_size: int | None = None  # rows to run with (None: the runtime chooses)
    attention: bool = True  # fetch the attention output (a batch does if any job wants it)
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Lane:
    """The queued jobs of one memory size (guarded by the batcher's condition)."""

    jobs: deque
    limit: int  # most sequences in a merged batch
    collecting: bool = False  # a thread is forming a batch from this lane
    queued: int = 0  # sequences in ``jobs``


class Batcher:
    """Queues jobs for one model and runs them in merged batches.

    Args:
        runtime: the model.
        executor: where a job runs when batching is off (a thread pool).
        max_batch_size: most sequences in one run; also the most one request may hold.
        max_queue_delay: seconds the first job of a batch may wait for others (0: take only
            what is already queued).
        enabled: False runs every job alone, as it arrives (for comparison).
        max_in_flight: batches run at once (the batcher's threads). A batch starts alongside a
            running one only when the jobs waiting fill it; fewer wait and merge into the next
            run, which costs less per sequence (two smaller batches side by side served
            fewer requests: docs/performance.md).
        threads: the server's onnxruntime threads, shared with its other models [default:
            ``max_in_flight`` of this batcher's own]; every run holds one, a large batch also
            takes the idle ones.
    """

    def __init__(self, runtime: BatchRuntime, executor: Executor, metrics: Metrics,
                 max_batch_size: int = 64, max_queue_delay: float = 0.002, enabled: bool = True,
                 max_in_flight: int = 1, threads: ThreadBudget | None = None):
        self.runtime = runtime
        self.executor = executor
        self.threads = threads or ThreadBudget(max_in_flight)
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.enabled = enabled
        self.max_in_flight = max_in_flight
        self._lanes: dict[int | None, _Lane] = {}
        self._queued = threading.Condition()  # guards the lanes and _stopping
        self._pending: set[asyncio.Future] = set()  # every submitted job not yet answered
        self._workers: list[threading.Thread] = []
        self._running = 0  # batches under way (guarded by the condition)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closing = False
        self._stopping = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = True
        if self.enabled:
            self._workers = [threading.Thread(target=self._work, daemon=True,
                                              name=f"batcher-{self.runtime.name}-{i}")
                             for i in range(self.max_in_flight)]
            for worker in self._workers:
                worker.start()

    async def close(self) -> None:
        """Finish every submitted job, then stop the threads."""
        self._closing = True
        while self._pending:
            await asyncio.sleep(0.005)
        with self._queued:
            self._stopping = True
            self._queued.notify_all()
        while any(worker.is_alive() for worker in self._workers):
            await asyncio.sleep(0.005)

    async def submit(self, inputs: np.ndarray, memory_size: int | None = None,
                     attention: bool = True) -> Result:
        """Run ``inputs`` (float32 [batch, time, input_size], already checked) with
        ``memory_size`` rows [default: the runtime's choice for the batch] and return their
        outputs, [batch, time, ...] each; the attention only when ``attention`` or another
        job of the same run asked for it (else None)."""
        self._check_request_size(len(inputs))
        if self._closing:
            raise ServingError("server is shutting down", status=503)
        loop = asyncio.get_running_loop()
        job = _Job(inputs, loop.create_future(), memory_size, attention)
        if not self.enabled:
            self._observe_queue([job])
            return (await loop.run_in_executor(self.executor, self._run_holding_thread,
                                               [job]))[0]
        assert self._started, "Batcher.start() was not awaited"
        self._pending.add(job.future)
        job.future.add_done_callback(self._pending.discard)
        with self._queued:
            lane = self._lane(memory_size)
            lane.jobs.append(job)
            lane.queued += len(inputs)
            # Wake the threads only when it changes what they do: a lane's first job (a batch
            # can start) or a full batch (it can close, or run alongside). Jobs in between are
            # picked up at the batch's deadline; waking the collecting thread for each one
            # cost the event loop the GIL once per request.
            if len(lane.jobs) == 1 or lane.queued >= lane.limit:
                self._queued.notify_all()
        return await job.future

    async def submit_grouped(self, runs: Sequence[tuple[np.ndarray, int, bool]]
                             ) -> list[Result]:
        """``submit`` for one request whose sequences need different memory rows: (inputs,
        rows, attention wanted) per size, each to its own lane, side by side; results in the
        order of ``runs``."""
        self._check_request_size(sum(len(x) for x, _, _ in runs))  # the whole request
        if len(runs) == 1:
            return [await self.submit(*runs[0])]
        return list(await asyncio.gather(*(self.submit(*run) for run in runs)))

    def _check_request_size(self, sequences: int) -> None:
        if sequences > self.max_batch_size:
            raise Unprocessable(f"{sequences} sequences in one request; the limit is "
                                f"{self.max_batch_size} (max batch size)")

    def _lane(self, memory_size: int | None) -> _Lane:
        """The lane of ``memory_size``, made on first use (the condition held)."""
        if memory_size not in self._lanes:
            trained = self.runtime.trained_memory_size
            limit = self.max_batch_size
            if memory_size:
                limit = max(1, self.max_batch_size * trained // memory_size)
            self._lanes[memory_size] = _Lane(deque(), limit)
        return self._lanes[memory_size]

    # -- the batcher's threads --------------------------------------------------------------
    def _work(self) -> None:
        """One of the batcher's threads: take the lane whose oldest job waited longest, hold
        one of the server's onnxruntime threads (an idle lane holds none), form a batch from
        the lane, run it, hand out the results; until ``close``."""
        while True:
            with self._queued:
                self._queued.wait_for(lambda: self._stopping or self._ready_lane() is not None)
                lane = self._ready_lane()
                if lane is None:  # stopping, nothing left to run
                    return
                lane.collecting = True
            with self.threads.run(1):  # outside the lock: submitting never waits for a run
                with self._queued:
                    jobs = self._collect(lane)
                    lane.collecting = False
                    self._running += 1
                    self._queued.notify_all()
                try:
                    if jobs:
                        self._observe_queue(jobs)
                        self._deliver(jobs, self._run_each_alone_on_failure(jobs))
                finally:
                    with self._queued:
                        self._running -= 1
                        self._queued.notify_all()

    def _ready_lane(self) -> _Lane | None:
        """The lane with queued jobs that no thread is collecting, oldest first job first;
        while a batch runs, only a lane whose jobs fill a batch."""
        ready = [lane for lane in self._lanes.values()
                 if lane.jobs and not lane.collecting
                 and (self._running == 0 or lane.queued >= lane.limit)]
        return min(ready, key=lambda lane: lane.jobs[0].queued_at) if ready else None

    def _collect(self, lane: _Lane) -> list[_Job]:
        """Jobs from ``lane`` for one batch: until it holds ``lane.limit`` sequences or its
        first job has waited ``max_queue_delay`` (the condition held; it is released while
        waiting, so jobs can arrive). A job that would overfill the batch stays queued for the
        next; one alone may hold more than the lane's limit."""
        jobs: list[_Job] = []
        size, deadline = 0, 0.0
        while True:
            while lane.jobs and lane.jobs[0].future.done():  # cancelled while queued
                lane.queued -= len(lane.jobs.popleft().inputs)
            if lane.jobs:
                job = lane.jobs[0]
                if jobs and size + len(job.inputs) > lane.limit:
                    return jobs
                lane.queued -= len(lane.jobs.popleft().inputs)
                if not jobs:
                    deadline = job.queued_at + self.max_queue_delay
                jobs.append(job)
                size += len(job.inputs)
                if size >= lane.limit:
                    return jobs
                continue
            remaining = deadline - time.perf_counter()
            if not jobs or remaining <= 0 or self._stopping:
                return jobs
            self._queued.wait(remaining)

    def _run_each_alone_on_failure(self, jobs: list[_Job]) -> list[Result | ServingError]:
        """Run ``jobs`` as one batch: each job's result. When a merged batch fails, each job is
        run again alone, so a request that breaks the model fails by itself and the others
        still get their answers; a failure becomes a ServingError (500 unless it says)."""
        try:
            return self._run(jobs)
        except Exception as err:  # never let the thread die
            if len(jobs) > 1:
                return [self._run_each_alone_on_failure([job])[0] for job in jobs]
            if not isinstance(err, ServingError):
                return [ServingError(f"inference failed: {err}", 500)]
            return [ServingError(err.message, err.status)]

    def _deliver(self, jobs: list[_Job], outcomes: list) -> None:
        """Hand each job its outcome on the event loop (one wake-up for the whole batch)."""
        def hand_out() -> None:
            for job, outcome in zip(jobs, outcomes):
                if job.future.done():  # the caller has gone away
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)
        self._loop.call_soon_threadsafe(hand_out)

    def _observe_queue(self, jobs: list[_Job]) -> None:
        now = time.perf_counter()
        for job in jobs:
            self.metrics.queue_time.labels(self.runtime.name).observe(now - job.queued_at)

    def _run_holding_thread(self, jobs: list[_Job]) -> list[Result]:
        """``_run`` for a caller that holds none of the server's threads yet (no batching)."""
        with self.threads.run(1):
            return self._run(jobs)

    def _run(self, jobs: list[_Job]) -> list[Result]:
        """Run ``jobs`` merged, holding one of the server's threads; a large batch also takes
        the idle ones (``runtime.threads_for``)."""
        x = merge([job.inputs for job in jobs])
        self.metrics.batch_size.labels(self.runtime.name).observe(len(x))
        extra = self.threads.take_idle(self.runtime.threads_for(len(x)) - 1)
        try:
            start = time.perf_counter()
            probs, attention = self.runtime.run_checked(
                x, jobs[0].memory_size, 1 + extra, any(job.attention for job in jobs))
            self.metrics.inference.labels(self.runtime.name).observe(time.perf_counter() - start)
        finally:
            self.threads.give_back(extra)
        self.metrics.runs.labels(self.runtime.name,
                                 str(self.runtime.threads_used(len(x), 1 + extra))).inc()
        results, offset = [], 0
        for job in jobs:
            rows, steps = job.inputs.shape[:2]
            mine = slice(offset, offset + rows)
            results.append((probs[mine, :steps],
                            None if attention is None else attention[mine, :steps]))
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
