"""The one request schema shared by ``ntm predict`` and the HTTP task API.

A payload is either TensorFlow Serving's envelope ``{"instances": [REQUEST, ...]}``, a single
REQUEST object, or a list of them. REQUEST is the task's own JSON:

    copy         {"sequence": [[0,1,0,0,1,1,0,1], ...]}
    repeat-copy  {"sequence": [[...8 bits...], ...], "repeats": 3}
    recall       {"items": [[[...6 bits...] x 3], ...], "query": [[...6 bits...] x 3]}

Any request may add ``"return_attention": true`` (the heads' weightings) and
``"return_probabilities": false`` (no per-step probabilities: a smaller answer), and, on a
stateful model, ``"sequence_id"``, ``"start"``, ``"end"`` (``ntm.serving.stateful``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ntm.serving import jsondoc
from ntm.serving.errors import BadRequest, Unprocessable
from ntm.serving.schema import validate
from ntm.serving.settings import DEFAULT_MAX_INSTANCES

TaskRequest = Annotated[dict[str, Any], Field(
    description="a task request: the task's own fields (copy: sequence; repeat-copy: "
                "sequence, repeats; recall: items, query), optionally return_attention, "
                "return_probabilities, and sequence_id, start, end (stateful models); "
                "the model's task checks them")]


class PredictEnvelope(BaseModel):
    """TensorFlow Serving's request envelope: {"instances": [REQUEST, ...]}."""

    model_config = ConfigDict(extra="forbid")
    instances: list[TaskRequest] = Field(
        min_length=1, description="a list of at least one request (JSON objects)")
    signature_name: Any = Field(None, description="accepted and ignored (one signature)")


class TaskRequests(RootModel[list[TaskRequest]]):
    """A bare list of requests."""

    root: list[TaskRequest] = Field(
        min_length=1, description="a list of at least one request (JSON objects)")


# What the task API and ``ntm predict`` take (the OpenAPI document declares this).
PredictBody = PredictEnvelope | TaskRequest | TaskRequests


def parse_instances(payload: Any, max_instances: int = DEFAULT_MAX_INSTANCES) -> list[Any]:
    """A decoded JSON payload (``PredictBody``) -> the list of requests; BadRequest names what
    is wrong, Unprocessable (422) says when there are more than ``max_instances``."""
    if isinstance(payload, dict) and "instances" in payload:
        instances = validate(PredictEnvelope, payload).instances
    elif isinstance(payload, list):
        instances = validate(TaskRequests, payload, "instances").root
    elif isinstance(payload, dict):
        instances = [payload]
    else:
        raise BadRequest(f"request: must be a JSON object or a list of them, got "
                         f"{type(payload).__name__}")
    if len(instances) > max_instances:
        raise Unprocessable(f"instances: {len(instances)} requests; the limit is {max_instances}")
    return instances


def parse_text(data: bytes | str) -> Any:
    """JSON, or JSON lines (one request per line) -> a payload for ``parse_instances``.

    Decoded strictly (ntm.serving.jsondoc): invalid UTF-8, duplicate keys, NaN, numbers beyond a
    float and deep nesting are refused with a BadRequest naming the problem."""
    stripped = jsondoc.text_of(data, "input").strip()
    if not stripped:
        raise BadRequest("input: empty; expected a JSON request, a list, or JSON lines")
    try:
        return jsondoc.loads(stripped, "input")
    except jsondoc.InvalidJSON as whole_error:
        lines = [line for line in stripped.splitlines() if line.strip()]
        try:
            first = jsondoc.loads(lines[0], "input line 1")
        except jsondoc.InvalidJSON:
            raise whole_error from None  # not JSON lines either: report the whole text's error
        return [first] + [jsondoc.loads(line, f"input line {number}")
                          for number, line in enumerate(lines[1:], 2)]
