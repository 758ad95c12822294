"""The data plane: the one way from requests to answers, under every surface.

Task requests (the v1 task API, ``ntm predict``, ``ntm.load(...).predict``): encoded by
``ntm.serving.codec.encode_tasks``, run in process (``run_local``) or through the model's
Batcher (``DataPlane``), decoded by ``decode_tasks``. Raw tensors (the V2 protocol, HTTP and
gRPC): checked once (``check_tensors``), run as the batch came: one array in, one array out.

``predict_tasks`` is the in-process path (no event loop, no threads); ``DataPlane`` is the
server's: the models, their batchers and the metrics of one server process.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from ntm.contract import metadata as meta
from ntm.serving.batcher import Batcher
from ntm.serving.codec import (Result, check_tensors, decode_tasks, encode_tasks,
                               request_field)
from ntm.serving.errors import BadRequest, NotFound
from ntm.serving.metrics import Metrics
from ntm.serving.runtime import ModelRuntime
from ntm.serving.sequences import SequenceStore
from ntm.serving.settings import ServerSettings
from ntm.serving.stateful import infer_part, is_part, predict_part
from ntm.serving.threads import ThreadBudget
from ntm.serving.v2codec import SequenceFlags

def run_local(runtime: ModelRuntime, runs: Sequence[tuple[np.ndarray, int, bool]]
              ) -> list[Result]:
    """Run each (inputs, memory rows, attention wanted) in this thread, one onnxruntime run
    each."""
    return [runtime.run_checked(x, rows, attention=attention) for x, rows, attention in runs]


def predict_tasks(runtime: ModelRuntime, requests: Sequence[Any],
                  fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Answer task requests in process: encode, one run per memory size, decode."""
    batch = encode_tasks(runtime, requests, fields)
    return decode_tasks(runtime, batch, run_local(runtime, batch.runs()))


# -- the server's plane ----------------------------------------------------------------------
SWEEP_SECONDS = 30.0  # the longest pause between two sweeps for idle sequences
@dataclass
class Answered:
    """What ``DataPlane.counting`` records of a request: its status (HTTP's numbers, for every
    protocol) and, once it is answered, its seconds."""

    status: int = 500
    seconds: float = 0.0


class DataPlane:
    """The models, their batchers, the metrics and the settings of one server process; every
    HTTP surface answers through ``predict`` (task requests) and ``infer`` (tensors)."""

    def __init__(self, runtimes: list[ModelRuntime], settings: ServerSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.runtimes = {r.name: r for r in runtimes}
        self.executor = ThreadPoolExecutor(max_workers=settings.inference_threads,
                                           thread_name_prefix="onnxruntime")
        self.threads = ThreadBudget(settings.inference_threads)  # shared by every model
        self.batchers = {
            r.name: Batcher(r, self.executor, self.metrics, settings.max_batch_size,
                            settings.max_queue_delay_ms / 1000.0, settings.batching,
                            max_in_flight=settings.inference_threads, threads=self.threads)
            for r in runtimes}
        self.sequences = SequenceStore(settings.max_sequences, settings.sequence_idle_s)
        self._sweeper: asyncio.Task | None = None
        self.metrics.track_sequences(self.sequences)
        self.metrics.show_engines(runtimes)
        self.ready = False

    @contextmanager
    def counting(self, name: str, protocol: str):
        """Count one inference request to model ``name`` over ``protocol`` in the metrics: in
        flight while the block runs, then answered with the status the block sets on the
        yielded ``Answered`` (500 unless it does), and its latency."""
        start = time.perf_counter()
        model = name if name in self.runtimes else "_unknown"
        answered = Answered()
        in_flight = self.metrics.in_flight.labels(model, protocol)
        in_flight.inc()
        try:
            yield answered
        finally:
            in_flight.dec()
            answered.seconds = time.perf_counter() - start
            self.metrics.observe_request(model, protocol, answered.status, answered.seconds)

    def get(self, name: str) -> ModelRuntime:
        """The model served as ``name``; NotFound (404) lists the served ones."""
        if name not in self.runtimes:
            raise NotFound(f"model {name!r} is not served here; served: "
                           f"{', '.join(sorted(self.runtimes))}")
        return self.runtimes[name]

    async def start(self) -> None:
        for b in self.batchers.values():
            await b.start()
        if self.settings.max_sequences:
            self._sweeper = asyncio.create_task(self._drop_idle_sequences())
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(*(b.close() for b in self.batchers.values()))
        self.executor.shutdown(wait=True)

    async def _drop_idle_sequences(self) -> None:
        """Free idle sequences' state on a clock, not only when a request or a scrape looks:
        a server nobody asks keeps no expired memory for long (a fraction of the timeout)."""
        every = min(max(self.settings.sequence_idle_s / 4, 0.01), SWEEP_SECONDS)
        while True:
            await asyncio.sleep(every)
            self.sequences.purge()

    async def predict(self, name: str, requests: Sequence[Any]) -> list[dict[str, Any]]:
        """Answer the task requests of one v1 envelope (errors name them by ``request_field``).
        Requests of a sequence (``"sequence_id"``) run one by one in order, on the model's kept
        state."""
        if any(is_part(r) for r in requests):
            answers = []
            for i, request in enumerate(requests):
                field = request_field(i, len(requests))
                answers.append(await predict_part(self, name, request, field) if is_part(request)
                               else (await self._predict_whole(name, [request], [field]))[0])
            return answers
        return await self._predict_whole(name, requests)

    async def _predict_whole(self, name: str, requests: Sequence[Any],
                             fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Task requests that are not parts of a sequence, batched."""
        runtime = self.get(name)
        batch = encode_tasks(runtime, requests, fields)
        outputs = await self.batchers[name].submit_grouped(batch.runs())
        answers = decode_tasks(runtime, batch, outputs)
        for answer in answers:
            self.metrics.observe_sequences(name, answer.get(meta.MEMORY_SIZE_NAME),
                                           answer["within_training_range"])
        return answers

    async def infer(self, name: str, inputs: dict[str, np.ndarray],
                    sequence: SequenceFlags | None = None, attention: bool = True
                    ) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
        """Run V2 input tensors: ({output name: tensor}, the response parameters). With
        ``sequence``, on the state its earlier requests left (``ntm.serving.stateful``).
        ``attention`` False: the attention tensor is not fetched (None); asked of a model
        without memory, it is a BadRequest naming the outputs there are."""
        runtime = self.get(name)
        if attention and not runtime.parts.attention:
            raise BadRequest(f"outputs: model {name} is {runtime.parts.network}, which has no "
                             f"'{meta.ATTENTION}' output; ask for "
                             + ", ".join(f"'{n}'" for n in runtime.parts.outputs))
        if sequence is not None:
            tensors, part = await infer_part(self, name, inputs, sequence)
            return tensors, part.parameters()
        batch = check_tensors(runtime, inputs)
        self.metrics.observe_sequences(name, batch.memory_size, batch.within_training_range,
                                       len(batch.inputs))
        probs, attention = await self.batchers[name].submit(batch.inputs, batch.memory_size,
                                                            attention)
        return {meta.PROBABILITIES: probs, meta.ATTENTION: attention}, batch.parameters()
