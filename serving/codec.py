"""The codec: task requests and V2 tensors <-> model arrays, checked, with errors naming the
field (``field_path``: "instances[2].sequence", or "sequence" in a lone request).

Below the batcher and the data plane, above the runtime (``ntm.serving.runtime``): nothing here
runs a model.

    encode_tasks   each request encoded and checked by its task, given its memory rows, and
                   the requests of one memory size right-padded into one array
    decode_tasks   each request's own rows decoded into its answer
    check_tensors  a V2 input checked once, its memory rows chosen
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ntm.contract import metadata as meta
from ntm.contract.tasks import Encoded, InvalidRequest
from ntm.serving.errors import BadRequest, Unprocessable
from ntm.serving.runtime import ModelRuntime

# probabilities [batch, time, out], attention [batch, time, heads, N] (None: not fetched, or a
# model without memory)
Result = tuple[np.ndarray, np.ndarray | None]


# -- one task request -------------------------------------------------------------------------
def encode_request(runtime: ModelRuntime, request: Any, field: str = "request") -> Encoded:
    """A task request -> model input; BadRequest/Unprocessable naming the field."""
    try:
        encoded = runtime.task.encode(request)
    except InvalidRequest as err:
        raise BadRequest(f"{field_path(field, err.field)}: {err.message}") from None
    steps = encoded.inputs.shape[0]
    if steps > runtime.max_time_steps:
        raise Unprocessable(
            f"{field}: needs {steps} time steps; model {runtime.name} accepts at most "
            f"{runtime.max_time_steps}")
    return encoded


def request_memory_size(runtime: ModelRuntime, encoded: Encoded, field: str = "request"
                        ) -> int | None:
    """The memory rows one encoded request runs with (None: a model without memory)."""
    return runtime.memory_size_for(runtime.task.memory_rows(encoded.difficulty), field)


def decode_answer(runtime: ModelRuntime, probabilities: np.ndarray, attention: np.ndarray | None,
                  encoded: Encoded, memory_size: int | None, return_attention: bool = False,
                  return_probabilities: bool = True) -> dict[str, Any]:
    """Model outputs for one request (unpadded [time, ...]; attention may be None unless
    ``return_attention``) -> the answer, with ``within_training_range`` and the
    ``memory_size`` (N) it ran with. A model without memory answers neither rows nor
    attention."""
    answer = runtime.task.decode(probabilities, encoded)
    answer.update(run_parameters(runtime.task.within_training_range(encoded.difficulty),
                                 memory_size))
    if not return_probabilities:
        answer.pop("probabilities", None)
    if return_attention and runtime.parts.attention:
        answer["attention"] = attention_dict(attention, runtime.metadata["ntm.export"]["heads"])
    return answer


def run_parameters(within_training_range: bool, memory_size: int | None) -> dict[str, Any]:
    """What every answer says of its run: ``within_training_range``, and the ``memory_size``
    (N) it ran with, where the model has memory (``memory_size`` None: it has not)."""
    parameters: dict[str, Any] = {"within_training_range": within_training_range}
    if memory_size is not None:
        parameters[meta.MEMORY_SIZE_NAME] = int(memory_size)
    return parameters


def group_by_size(sizes: Sequence[int | None]) -> dict[int | None, list[int]]:
    """{memory size: indices of the requests that run with it}: only requests of one size can
    share an onnxruntime run (a model without memory: one group, None)."""
    groups: dict[int | None, list[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(size, []).append(i)
    return groups


def pad_batch(sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Right-pad [time, width] arrays with zeros into [batch, max time, width] (the model is
    causal, so padding after a sequence never changes its outputs)."""
    longest = max(s.shape[0] for s in sequences)
    out = np.zeros((len(sequences), longest, sequences[0].shape[1]), np.float32)
    for i, s in enumerate(sequences):
        out[i, : s.shape[0]] = s
    return out


def request_field(index: int, count: int) -> str:
    """How errors name request ``index`` of ``count`` (the one rule, on every surface): the
    whole of a lone request is "request" (plain, or the only one of an envelope or a list),
    the others "instances[i]"."""
    return "request" if count == 1 else f"instances[{index}]"


def field_path(field: str, name: str) -> str:
    """Field ``name`` of the request called ``field`` (``request_field``), as errors name it:
    "instances[2].sequence", or "sequence" in a lone request."""
    return name if field == "request" else f"{field}.{name}"


def response_flag(request: Any, name: str, default: bool, field: str = "request") -> bool:
    """A request's boolean flag ``name`` (anything but true or false is an error naming it)."""
    if not isinstance(request, dict) or name not in request:
        return default
    flag = request[name]
    if not isinstance(flag, bool):
        raise BadRequest(f"{field_path(field, name)}: must be true or false, got {flag!r}")
    return flag


def wants_attention(request: Any, field: str = "request") -> bool:
    """The request's ``return_attention`` flag [default: false]."""
    return response_flag(request, "return_attention", False, field)


def wants_probabilities(request: Any, field: str = "request") -> bool:
    """The request's ``return_probabilities`` flag [default: true]: false drops the per-step
    probabilities from the answer (a smaller response to encode and decode)."""
    return response_flag(request, "return_probabilities", True, field)


def attention_dict(attention: np.ndarray, heads: dict) -> dict[str, list]:
    """[time, heads, N] -> {"read": [[...per step...] per head], "write": [...]} (rounded)."""
    read = heads["read"]
    rounded = np.round(attention.astype(np.float64), 5)
    return {
        "read": [rounded[:, h].tolist() for h in range(read)],
        "write": [rounded[:, read + h].tolist() for h in range(heads["write"])],
    }


# -- many task requests ----------------------------------------------------------------------
@dataclass(frozen=True)
class TaskBatch:
    """Task requests encoded for one model, grouped by the memory rows they run with."""

    encoded: list[Encoded]
    attention: list[bool]  # each request's return_attention
    probabilities: list[bool]  # each request's return_probabilities
    groups: dict[int | None, list[int]]  # memory rows (or None) -> the requests run with them

    def runs(self) -> list[tuple[np.ndarray, int | None, bool]]:
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
        fields = [request_field(i, len(requests)) for i in range(len(requests))]
    encoded = [encode_request(runtime, r, f) for r, f in zip(requests, fields)]
    attention = [wants_attention(r, f) for r, f in zip(requests, fields)]
    probabilities = [wants_probabilities(r, f) for r, f in zip(requests, fields)]
    sizes = [request_memory_size(runtime, e, f) for e, f in zip(encoded, fields)]
    return TaskBatch(encoded, attention, probabilities, group_by_size(sizes))


def decode_tasks(runtime: ModelRuntime, batch: TaskBatch, outputs: Sequence[Result]
                 ) -> list[dict[str, Any]]:
    """The answers, in request order, from the outputs of ``batch.runs()`` (same order)."""
    answers: list[dict[str, Any]] = [{} for _ in batch.encoded]
    for (rows, group), (probs, attention) in zip(batch.groups.items(), outputs):
        for row, i in enumerate(group):
            steps = batch.encoded[i].inputs.shape[0]
            answers[i] = decode_answer(runtime, 
                probs[row, :steps], None if attention is None else attention[row, :steps],
                batch.encoded[i], rows, batch.attention[i], batch.probabilities[i])
    return answers


# -- V2 tensors -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorBatch:
    """A V2 input checked once: inputs float32 [batch, time, in] and the rows it runs with
    (None: a model without memory)."""

    inputs: np.ndarray
    memory_size: int | None
    within_training_range: bool  # judged by time steps alone: tensors carry no task length

    def parameters(self) -> dict[str, Any]:
        """The response parameters (``run_parameters``)."""
        return run_parameters(self.within_training_range, self.memory_size)


def check_input_names(runtime: ModelRuntime, inputs: dict[str, np.ndarray]) -> None:
    """BadRequest unless the V2 inputs are ``inputs`` and optionally ``memory_size`` where the
    model has memory (a stateful model's state is the server's to keep: ``sequence_id``)."""
    optional = runtime.parts.optional_inputs
    if meta.INPUT_NAME not in inputs or not set(inputs) <= {meta.INPUT_NAME, *optional}:
        also = "".join(f" and optionally '{name}'" for name in optional)
        why = "" if runtime.parts.memory or meta.MEMORY_SIZE_NAME not in inputs else \
            f" ({runtime.parts.network} has no memory rows)"
        raise BadRequest(f"inputs: model {runtime.name} takes the input '{meta.INPUT_NAME}'"
                         f"{also}, got {sorted(inputs)}{why}")


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
