"""One rule for naming a request's fields and one status per kind of error, on every surface:
a plain task request, an envelope of one, an envelope of two (the second bad), a task request
that is part of a sequence, V2 tensors over HTTP, V2 over gRPC, and a V2 part of a sequence.

The rule (``ntm.serving.codec.request_field``): a lone request's fields are named as they are
("sequence[0][0]"), the fields of request i among several "instances[i].sequence[0][0]"; the
whole of a lone request is "request". The status depends on the kind of error only: a bad
value 400, over a limit 422 (gRPC: the status of the HTTP one)."""

from __future__ import annotations

import json
import socket

import httpx
import numpy as np
import pytest

from tests.serving.conftest import ServerProcess

grpcclient = pytest.importorskip("tritonclient.grpc")
pytest.importorskip("grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from ntm.serving.v2grpc import GRPC_CODES  # noqa: E402

MAX_STEPS = 50
ITEM = [[0] * 6] * 3
GOOD = {"copy": {"sequence": [[0, 1, 0, 1, 0, 1, 0, 1]]}, "recall": {"items": [ITEM, ITEM],
                                                                       "query": ITEM}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(bundled):
    port = free_port()
    process = ServerProcess(["--model", "copy", "--model", "recall", "--grpc-port", str(port),
                             "--max-time-steps", str(MAX_STEPS)])
    yield process, f"127.0.0.1:{port}"
    process.stop()


def surfaces(model: str, request: dict, part: dict | None, sequence_id: int
             ) -> dict[str, tuple[object, str]]:
    """{surface: (v1 body, the prefix its fields get)} for one bad request (and the same
    mistake in a part of a sequence, for a task that takes parts)."""
    good = GOOD[model]
    found = {"plain": (request, ""), "envelope of one": ({"instances": [request]}, ""),
             "second of two": ({"instances": [good, request]}, "instances[1].")}
    if part is not None:
        part = {**part, "sequence_id": sequence_id, "start": True, "end": True}
        found["part of a sequence"] = (part, "")
        found["a part, second of two"] = ({"instances": [good, part]}, "instances[1].")
    return found


TASK_CASES = [
    # (kind, model, bad request, the same in a part, status, the field it names (after the
    #  prefix; "" the whole request), how the message goes on)
    ("a bad bit", "copy", {"sequence": [[2, 0, 0, 0, 0, 0, 0, 0]]}, None, 400, "sequence[0][0]",
     "must be 0 or 1"),
    ("a bad bit in an item", "recall",
     {"items": [[[2, 0, 0, 0, 0, 0], [0] * 6, [0] * 6], ITEM], "query": ITEM},
     {"items": [[[2, 0, 0, 0, 0, 0], [0] * 6, [0] * 6], ITEM]}, 400, "items[0][0][0]",
     "must be 0 or 1"),
    ("a bad flag", "recall", {**GOOD["recall"], "return_attention": "yes"},
     {"items": [ITEM, ITEM], "return_attention": "yes"}, 400, "return_attention",
     "must be true or false"),
    ("too many time steps", "recall", {"items": [ITEM] * 13, "query": ITEM},
     {"items": [ITEM] * 13}, 422, "", "needs "),
]


@pytest.mark.parametrize("kind,model,request_,part,status,name,text", TASK_CASES,
                         ids=[c[0] for c in TASK_CASES])
def test_task_requests_name_fields_alike_and_answer_one_status(server, kind, model, request_,
                                                               part, status, name, text):
    process, _ = server
    first_id = 500 + 10 * [c[0] for c in TASK_CASES].index(kind)  # sequence ids of this case
    for surface, (body, prefix) in surfaces(model, request_, part, first_id).items():
        answer = httpx.post(f"{process.url}/v1/models/{model}:predict", json=body, timeout=30)
        assert answer.status_code == status, (surface, answer.text)
        error = answer.json()["error"]
        whole = prefix.rstrip(".") or "request"
        expected = f"{prefix}{name}: {text}" if name else f"{whole}: {text}"
        assert error.startswith(expected), (surface, error, expected)


TENSOR_CASES = [
    # (kind, inputs, status, message start)
    ("a wrong width", np.zeros((1, 3, 4), np.float32), 400, "inputs must have shape"),
    ("too many time steps", np.zeros((1, MAX_STEPS + 1, 9), np.float32), 422,
     f"inputs have {MAX_STEPS + 1} time steps; the limit is {MAX_STEPS}"),
    ("no time step", np.zeros((1, 0, 9), np.float32), 400, "inputs must hold at least one"),
]


def v2_body(x: np.ndarray, **parameters) -> dict:
    body = {"inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    return {**body, "parameters": parameters} if parameters else body


@pytest.mark.parametrize("kind,x,status,message", TENSOR_CASES, ids=[c[0] for c in TENSOR_CASES])
def test_v2_tensors_answer_one_status_over_http_grpc_and_in_a_sequence(server, kind, x, status,
                                                                         message):
    process, address = server
    rpc = grpcclient.InferenceServerClient(address)
    for sequence in ({}, {"sequence_id": 900 + len(kind), "sequence_start": True,
                          "sequence_end": True}):
        answer = httpx.post(f"{process.url}/v2/models/copy/infer", json=v2_body(x, **sequence),
                            timeout=30)
        assert answer.status_code == status, (sequence, answer.text)
        assert answer.json()["error"].startswith(message), answer.text
        tensor = grpcclient.InferInput("inputs", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException) as caught:
            rpc.infer("copy", [tensor], **sequence)
        assert caught.value.status() == f"StatusCode.{GRPC_CODES[status].name}"
        assert caught.value.message().startswith(message)


def test_a_bad_sequence_id_is_named_alike(server):
    process, _ = server
    bad = {**GOOD["recall"], "sequence_id": -1, "start": True}
    for body, prefix in ((bad, ""), ({"instances": [GOOD["recall"], bad]}, "instances[1].")):
        answer = httpx.post(f"{process.url}/v1/models/recall:predict", json=body, timeout=30)
        assert answer.status_code == 400
        assert answer.json()["error"].startswith(f"{prefix}sequence_id: must be a positive"), \
            json.dumps(answer.json())
