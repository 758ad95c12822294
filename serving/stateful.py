"""Requests that belong to a sequence: run on a stateful model from the state its sequence
reached (``ntm.serving.sequences`` keeps it), one at a time per sequence, outside the batcher
(a stateless request never waits for a sequence, nor a sequence for another).

Two surfaces share this path: V2 tensors with Triton's ``sequence_id``/``sequence_start``/
``sequence_end`` parameters (``infer_part``), and task requests with ``"sequence_id"``,
``"start"`` and ``"end"`` fields (``predict_part``; the task splits its request into parts,
``Task.encode_part``). The memory rows are fixed when a sequence starts: the request's
``memory_size`` if it asks, else what its first part needs (at least the trained rows); a model
without memory (the LSTM baseline) has none, and its sequences carry its layers' state alone.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from concurrent.futures import Executor
from typing import Any, Hashable, Protocol

import numpy as np

from ntm.contract import metadata as meta
from ntm.contract.tasks import InvalidRequest
from ntm.contract.tasks.task import RESPONSE_FLAGS
from ntm.serving.errors import BadRequest, Unprocessable
from ntm.serving.codec import (attention_dict, check_input_names, field_path, requested_rows,
                               run_parameters, wants_probabilities)
from ntm.serving.metrics import Metrics
from ntm.serving.runtime import ModelRuntime
from ntm.serving.sequences import Sequence, SequenceStore, UnknownSequence
from ntm.serving.threads import ThreadBudget

PART_FIELDS = ("sequence_id", "start", "end", "memory_size")  # task requests in a sequence


class SequenceHost(Protocol):
    """What a sequence's requests need of the server (``ntm.serving.plane.DataPlane`` has it):
    its models, its live sequences, its threads and its metrics."""

    sequences: SequenceStore
    executor: Executor
    threads: ThreadBudget
    metrics: Metrics

    def get(self, name: str) -> ModelRuntime: ...


@dataclass(frozen=True)
class PartResult:
    """What one part ran with: the sequence's rows (None: a model without memory), its time
    steps so far, and whether they all lay within the training range (judged by time
    steps)."""

    sequence_id: Hashable
    memory_size: int | None
    steps: int
    within_training_range: bool
    ended: bool

    def parameters(self) -> dict[str, Any]:
        return {"sequence_id": self.sequence_id,
                **run_parameters(self.within_training_range, self.memory_size),
                "sequence_steps": self.steps, "sequence_end": self.ended}


def require_stateful(runtime: ModelRuntime) -> None:
    if not runtime.stateful:
        raise BadRequest(f"model {runtime.name} keeps no state between requests (exported "
                         f"without --stateful): send the sequence whole, without sequence_id, "
                         f"or serve a model exported with `ntm export --stateful`")


@asynccontextmanager
async def turn(plane: SequenceHost, sequence: Sequence):
    """Wait for ``sequence``'s turn (its requests run one at a time, in arrival order); refuse
    when it ended or started again meanwhile."""
    async with sequence.lock:
        if not plane.sequences.holds(sequence):
            raise UnknownSequence(f"sequence_id {sequence.id!r}: ended or started again while "
                                  f"this request waited for its turn")
        yield


def run_on_one_thread(plane: SequenceHost, runtime: ModelRuntime, x: np.ndarray,
                      sequence: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``runtime.run_in_sequence`` holding one of the server's onnxruntime threads."""
    with plane.threads.run(1):
        return runtime.run_in_sequence(x, sequence.rows, sequence.state)


async def run_part(plane: SequenceHost, runtime: ModelRuntime, sequence: Sequence,
                   x: np.ndarray, end: bool) -> tuple[np.ndarray, np.ndarray, PartResult]:
    """Run inputs [batch, time, in] as the next part of ``sequence`` (the caller holds its
    ``turn``): (probabilities, attention, what it ran with). A failed first part drops the
    sequence: its next request is refused, never run from a memory that missed the start."""
    store = plane.sequences
    loop = asyncio.get_running_loop()
    try:
        probs, attention, state = await loop.run_in_executor(
            plane.executor, run_on_one_thread, plane, runtime, x, sequence)
    except Exception:
        if sequence.state is None:
            store.end(sequence)
        raise
    sequence.state = state
    sequence.steps += x.shape[1]
    store.touch(sequence)
    if end:
        store.end(sequence)
    within = sequence.steps <= runtime.task.max_trained_time_steps
    plane.metrics.observe_sequences(runtime.name, sequence.rows, within, len(x))
    return probs, attention, PartResult(sequence.id, sequence.rows, sequence.steps, within, end)


def start_sequence(plane: SequenceHost, runtime: ModelRuntime, sequence_id: Hashable,
                   x: np.ndarray, rows: int | None) -> Sequence:
    """A sequence begun (again) by its first part ``x``: with ``rows`` memory rows, else the
    rows ``x`` needs (at least the trained rows)."""
    require_stateful(runtime)
    n = runtime.memory_size_for_inputs(x, rows)
    return plane.sequences.start(runtime.name, sequence_id, n, len(x))


def live_sequence(plane: SequenceHost, runtime: ModelRuntime, sequence_id: Hashable,
                  rows: int | None, batch: int) -> Sequence:
    """The live sequence a later part goes on from; its rows and batch must stay."""
    require_stateful(runtime)
    sequence = plane.sequences.get(runtime.name, sequence_id)
    if rows is not None and rows != sequence.rows:
        raise BadRequest(f"{meta.MEMORY_SIZE_NAME}: sequence_id {sequence_id!r} runs with "
                         f"{sequence.rows} memory rows, fixed when it started; got {rows}")
    if batch != sequence.batch:
        raise BadRequest(f"inputs: sequence_id {sequence_id!r} started with a batch of "
                         f"{sequence.batch} sequence(s); this request has {batch}")
    return sequence


async def infer_part(plane: SequenceHost, name: str, inputs: dict[str, np.ndarray], flags
                     ) -> tuple[dict[str, np.ndarray], PartResult]:
    """V2 tensors of one sequence (``flags``: ``ntm.serving.v2codec.SequenceFlags``)."""
    runtime = plane.get(name)
    require_stateful(runtime)
    check_input_names(runtime, inputs)
    x = runtime.check_inputs(inputs[meta.INPUT_NAME])
    rows = requested_rows(inputs.get(meta.MEMORY_SIZE_NAME))
    sequence = start_sequence(plane, runtime, flags.id, x, rows) if flags.start \
        else live_sequence(plane, runtime, flags.id, rows, len(x))
    async with turn(plane, sequence):
        probs, attention, result = await run_part(plane, runtime, sequence, x, flags.end)
    return {meta.PROBABILITIES: probs, meta.ATTENTION: attention}, result


def is_part(request: Any) -> bool:
    """Whether a task request belongs to a sequence (it carries a "sequence_id")."""
    return isinstance(request, dict) and "sequence_id" in request


async def predict_part(plane: SequenceHost, name: str, request: dict, field: str
                       ) -> dict[str, Any]:
    """One task request of a sequence: the task encodes its part against what the sequence
    holds (in the sequence's turn); the answer adds the sequence's figures."""
    runtime = plane.get(name)
    require_stateful(runtime)
    sequence_id, start, end, rows = part_fields(request, field)
    task_request = {k: v for k, v in request.items()
                    if k not in PART_FIELDS and k not in RESPONSE_FLAGS}
    return_probabilities = wants_probabilities(request, field)
    if start:
        encoded, context = encode_part(runtime, task_request, {}, field)
        sequence = start_sequence(plane, runtime, sequence_id, encoded.inputs[None], rows)
    else:
        sequence = live_sequence(plane, runtime, sequence_id, None, 1)
    async with turn(plane, sequence):
        if not start:
            encoded, context = encode_part(runtime, task_request, sequence.context, field)
        probs, attention, result = await run_part(plane, runtime, sequence,
                                                  encoded.inputs[None], end)
        sequence.context = context
    answer = runtime.task.decode_part(probs[0], encoded, context)
    answer.update(result.parameters())
    if not return_probabilities:
        answer.pop("probabilities", None)
    if request.get("return_attention") and attention is not None:
        answer["attention"] = attention_dict(attention[0], runtime.metadata["ntm.export"]["heads"])
    return answer


def encode_part(runtime: ModelRuntime, request: dict, context: dict, field: str):
    """The task's ``encode_part``, its errors naming the field; a part must add steps."""
    try:
        encoded, context = runtime.task.encode_part(request, context)
    except InvalidRequest as err:
        raise BadRequest(f"{field_path(field, err.field)}: {err.message}") from None
    if encoded.inputs.shape[0] == 0:
        raise BadRequest(f"{field}: this part adds nothing to the sequence")
    if encoded.inputs.shape[0] > runtime.max_time_steps:
        raise Unprocessable(f"{field}: needs {encoded.inputs.shape[0]} time steps; model "
                         f"{runtime.name} accepts at most {runtime.max_time_steps} per request")
    return encoded, context


def part_fields(request: dict, field: str) -> tuple[Hashable, bool, bool, int | None]:
    """A task part's (sequence_id, start, end, memory_size), checked."""
    sid = request["sequence_id"]
    if isinstance(sid, bool) or not isinstance(sid, (int, str)) or sid in (0, "") or \
            (isinstance(sid, int) and not 0 < sid < 2 ** 64) or \
            (isinstance(sid, str) and len(sid) > 256):
        raise BadRequest(f"{field_path(field, 'sequence_id')}: must be a positive integer or a "
                         f"non-empty string (at most 256 characters), got {sid!r}")
    flags = []
    for key in ("start", "end", "return_attention"):
        value = request.get(key, False)
        if not isinstance(value, bool):
            raise BadRequest(f"{field_path(field, key)}: must be true or false, got {value!r}")
        flags.append(value)
    rows = request.get("memory_size")
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int)):
        raise BadRequest(f"{field_path(field, 'memory_size')}: must be an integer, got {rows!r}")
    if rows is not None and not flags[0]:
        raise BadRequest(f"{field_path(field, 'memory_size')}: the memory rows are chosen when a sequence "
                         f"starts (with \"start\": true)")
    return sid, flags[0], flags[1], rows
