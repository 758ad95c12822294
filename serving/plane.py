"""The data plane: the one way from requests to answers, under every surface.

Task requests (the v1 task API, ``ntm predict``, ``ntm.load(...).predict``)::

    encode_tasks   each request encoded and checked by its task, given its memory rows, and
                   the requests of one memory size right-padded into one array
    run            in process (``run_local``), or through the model's Batcher (``DataPlane``)
    decode_tasks   each request's own rows decoded into its answer

Raw tensors (the V2 protocol)::

    check_tensors  the input checked once, its memory rows chosen
    run            the batch as it came: one array in, one array out (never split into rows)

``predict_tasks`` is the in-process path (no event loop, no threads); ``DataPlane`` is the
server's: the models, their batchers and the metrics of one server process.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ntm.contract import metadata as meta
from ntm.contract.tasks import Encoded
from ntm.serving.batcher import Batcher, Result
from ntm.serving.errors import BadRequest, NotFound
from ntm.serving.metrics import Metrics
from ntm.serving.runtime import (ModelRuntime, group_by_size, pad_batch, wants_attention,
                                  wants_probabilities)
from ntm.serving.sequences import SequenceStore
from ntm.serving.settings import ServerSettings
from ntm.serving.stateful import infer_part, is_part, predict_part
from ntm.serving.threads import ThreadBudget
from ntm.serving.v2codec import SequenceFlags

VERSION = "1"  # the one version of each model served


# -- task requests ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskBatch:
    """Task requests encoded for one model, grouped by the memory rows they run with."""

    encoded: list[Encoded]
    attention: list[bool]  # each request's return_attention
    probabilities: list[bool]  # each request's return_probabilities
    groups: dict[int, list[int]]  # memory rows -> indices of the requests that run with them

    def runs(self) -> list[tuple[np.ndarray, int, bool]]:
        """(inputs [requests, longest, in], memory rows, whether any of them wants the
        attention) per group: what the model runs."""
        return [(pad_batch([self.encoded[i].inputs for i in group]), rows,
                 any(self.attention[i] for i in group))
                for rows, group in self.groups.items()]


def encode_tasks(runtime: ModelRuntime, requests: Sequence[Any],
                 fields: Sequence[str] | None = None) -> TaskBatch:
    """Encode and check ``requests``; errors name the field (``fields``: each request's name
    [default: "request" for one, "instances[i]" for several])."""
    if fields is None:
        fields = [f"instances[{i}]" if len(requests) > 1 else "request"
                  for i in range(len(requests))]
    encoded = [runtime.encode(r, f) for r, f in zip(requests, fields)]
    attention = [wants_attention(r, f) for r, f in zip(requests, fields)]
    probabilities = [wants_probabilities(r, f) for r, f in zip(requests, fields)]
    sizes = [runtime.request_memory_size(e, f) for e, f in zip(encoded, fields)]
    return TaskBatch(encoded, attention, probabilities, group_by_size(sizes))


def decode_tasks(runtime: ModelRuntime, batch: TaskBatch, outputs: Sequence[Result]
                 ) -> list[dict[str, Any]]:
    """The answers, in request order, from the outputs of ``batch.runs()`` (same order)."""
    answers: list[dict[str, Any]] = [{} for _ in batch.encoded]
    for (rows, group), (probs, attention) in zip(batch.groups.items(), outputs):
        for row, i in enumerate(group):
            steps = batch.encoded[i].inputs.shape[0]
            answers[i] = runtime.decode(
                probs[row, :steps], None if attention is None else attention[row, :steps],
                batch.encoded[i], rows, batch.attention[i], batch.probabilities[i])
    return answers


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


# -- raw tensors -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorBatch:
    """A V2 input checked once: inputs float32 [batch, time, in] and the rows it runs with."""

    inputs: np.ndarray
    memory_size: int
    within_training_range: bool  # judged by time steps alone: tensors carry no task length


def check_input_names(runtime: ModelRuntime, inputs: dict[str, np.ndarray]) -> None:
    """BadRequest unless the V2 inputs are ``inputs`` and optionally ``memory_size`` (a
    stateful model's state is the server's to keep: ``sequence_id``)."""
    if meta.INPUT_NAME not in inputs or \
            not set(inputs) <= {meta.INPUT_NAME, meta.MEMORY_SIZE_NAME}:
        raise BadRequest(f"inputs: model {runtime.name} takes the input '{meta.INPUT_NAME}' "
                         f"and optionally '{meta.MEMORY_SIZE_NAME}', got {sorted(inputs)}")


def check_tensors(runtime: ModelRuntime, inputs: dict[str, np.ndarray]) -> TensorBatch:
    """The model's input tensor and optional ``memory_size``, checked; BadRequest or
    Unprocessable (422, over a limit) naming what is wrong."""
    check_input_names(runtime, inputs)
    x = runtime.check_inputs(inputs[meta.INPUT_NAME])
    rows = runtime.memory_size_for_inputs(x, requested_rows(inputs.get(meta.MEMORY_SIZE_NAME)))
    return TensorBatch(x, rows, x.shape[1] <= runtime.task.max_trained_time_steps)


def requested_rows(tensor: np.ndarray | None) -> int | None:
    """The rows a V2 request asks for through its optional ``memory_size`` input (integers,
    any shape; the largest counts, as the exported model does) or None."""
    if tensor is None:
        return None
    if tensor.size == 0 or not np.issubdtype(tensor.dtype, np.integer):
        raise BadRequest(f"inputs: '{meta.MEMORY_SIZE_NAME}' must hold at least one integer "
                         f"(INT32 or INT64)")
    return int(tensor.max())


# -- the server's plane ----------------------------------------------------------------------
SWEEP_SECONDS = 30.0  # the longest pause between two sweeps for idle sequences
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
        self.ready = False

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
        """Answer the task requests of one v1 envelope (fields "instances[i]"). Requests of a
        sequence (``"sequence_id"``) run one by one in order, on the model's kept state."""
        if any(is_part(r) for r in requests):
            answers = []
            for i, request in enumerate(requests):
                field = f"instances[{i}]" if len(requests) > 1 else "request"
                answers.append(await predict_part(self, name, request, field)
                               if is_part(request) else (await self.predict(name, [request]))[0])
            return answers
        runtime = self.get(name)
        batch = encode_tasks(runtime, requests,
                             [f"instances[{i}]" for i in range(len(requests))])
        outputs = await self.batchers[name].submit_grouped(batch.runs())
        answers = decode_tasks(runtime, batch, outputs)
        for answer in answers:
            self.metrics.observe_sequences(name, answer["memory_size"],
                                           answer["within_training_range"])
        return answers

    async def infer(self, name: str, inputs: dict[str, np.ndarray],
                    sequence: SequenceFlags | None = None, attention: bool = True
                    ) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
        """Run V2 input tensors: ({output name: tensor}, the response parameters). With
        ``sequence``, on the state its earlier requests left (``ntm.serving.stateful``).
        ``attention`` False: the attention tensor is not fetched (None)."""
        if sequence is not None:
            tensors, part = await infer_part(self, name, inputs, sequence)
            return tensors, part.parameters()
        batch = check_tensors(self.get(name), inputs)
        self.metrics.observe_sequences(name, batch.memory_size, batch.within_training_range,
                                       len(batch.inputs))
        probs, attention = await self.batchers[name].submit(batch.inputs, batch.memory_size,
                                                            attention)
        return ({meta.PROBABILITIES: probs, meta.ATTENTION: attention},
                {"within_training_range": batch.within_training_range,
                 meta.MEMORY_SIZE_NAME: batch.memory_size})
