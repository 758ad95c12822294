"""``ntm serve --grpc-port``: the V2 protocol over gRPC, through tritonclient.grpc unmodified
(sync and asyncio), against the same data plane as HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import httpx
import numpy as np
import pytest

from ntm.contract.tasks import Difficulty, get_task
from tests.serving.conftest import ServerProcess, metric, wait_until

grpcclient = pytest.importorskip("tritonclient.grpc")
httpclient = pytest.importorskip("tritonclient.http")
pytest.importorskip("grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from ntm.serving.v2grpc import GRPC_CODES  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def grpc_server(start_server):
    """``start(*args)`` -> (server, gRPC address)."""
    def start(*args: str):
        port = free_port()
        server = start_server("--grpc-port", str(port), *args)
        assert any(f"gRPC (V2, inference.GRPCInferenceService) on 127.0.0.1:{port}" in line
                   for line in server.lines)
        return server, f"127.0.0.1:{port}"
    return start


def task_inputs(name: str, seed: int = 0, batch: int = 2) -> np.ndarray:
    task = get_task(name)
    lo, hi = task.train_lengths
    repeats = task.train_repeats[1] if task.train_repeats else None
    return task.fixed_batch(np.random.default_rng(seed), batch, Difficulty(hi, repeats)).inputs


def tensor(module, x: np.ndarray, name: str = "inputs", datatype: str = "FP32"):
    t = module.InferInput(name, list(x.shape), datatype)
    t.set_data_from_numpy(x)
    return t


def test_answers_equal_http_for_every_bundled_model(grpc_server, bundled):
    server, address = grpc_server()
    rpc = grpcclient.InferenceServerClient(address)
    web = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert rpc.is_server_live() and rpc.is_server_ready()
    for name in ("copy", "recall", "repeat-copy"):
        assert rpc.is_model_ready(name)
        x = task_inputs(name)
        ours = rpc.infer(name, [tensor(grpcclient, x)])
        theirs = web.infer(name, [tensor(httpclient, x)])
        for output in ("probabilities", "attention"):
            np.testing.assert_array_equal(ours.as_numpy(output), theirs.as_numpy(output))
        params = ours.get_response(as_json=True)["parameters"]
        assert params["memory_size"]["int64_param"] == "128"
        assert params["within_training_range"]["bool_param"] is True
    metadata = rpc.get_model_metadata("copy", as_json=True)
    assert metadata["inputs"][0] == {"name": "inputs", "datatype": "FP32",
                                     "shape": ["-1", "-1", "9"]}
    config = rpc.get_model_config("copy", as_json=True)["config"]
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == ["-1", "9"]
    assert rpc.get_server_metadata().name == "ntm"
    text = server.metrics()
    assert metric(text, "ntm_requests_total",
                  'model="copy",protocol="grpc",status="200"') == 1


def test_typed_contents_one_output_and_memory_growth(grpc_server, bundled):
    """Values in ``contents`` instead of raw bytes; only the output asked for; a memory_size
    input (INT64 as typed contents) and a long input that grows the memory itself."""
    from tritonclient.grpc import service_pb2

    server, address = grpc_server()
    x = task_inputs("copy", 1, batch=1)
    request = service_pb2.ModelInferRequest(model_name="copy")
    first = request.inputs.add(name="inputs", datatype="FP32", shape=x.shape)
    first.contents.fp32_contents.extend(x.ravel().tolist())
    rows = request.inputs.add(name="memory_size", datatype="INT64", shape=[1])
    rows.contents.int64_contents.append(256)
    request.outputs.add(name="attention")
    rpc = grpcclient.InferenceServerClient(address)
    response = rpc._client_stub.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["attention"]
    assert list(response.outputs[0].shape) == [1, x.shape[1], 2, 256]
    long = np.zeros((1, 1001, 9), np.float32)
    long[0, :500, :8] = np.random.default_rng(2).integers(0, 2, (500, 8))
    long[0, 500, 8] = 1
    answer = rpc.infer("copy", [tensor(grpcclient, long)])
    assert answer.get_response(as_json=True)["parameters"]["memory_size"]["int64_param"] == "512"
    bits = answer.as_numpy("probabilities")[0, 501:] > 0.5
    assert (bits == (long[0, :500, :8] > 0.5)).all()


def test_a_sequence_in_chunks_sync_and_asyncio(grpc_server, bundled):
    server, address = grpc_server()
    x = task_inputs("copy", 3, batch=1)
    whole = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}").infer(
        "copy", [tensor(httpclient, x)]).as_numpy("probabilities")
    cuts = [0, 12, 30, x.shape[1]]
    rpc = grpcclient.InferenceServerClient(address)
    parts = [rpc.infer("copy", [tensor(grpcclient, x[:, a:b])], sequence_id=7,
                       sequence_start=a == 0, sequence_end=b == x.shape[1]
                       ).as_numpy("probabilities") for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, atol=1e-5, rtol=0)

    async def chunks():
        import tritonclient.grpc.aio as aio

        client = aio.InferenceServerClient(address)
        try:
            out = []
            for a, b in zip(cuts, cuts[1:]):
                r = await client.infer("copy", [tensor(aio, x[:, a:b])], sequence_id="s-8",
                                       sequence_start=a == 0, sequence_end=b == x.shape[1])
                out.append(r.as_numpy("probabilities"))
            return np.concatenate(out, axis=1)
        finally:
            await client.close()

    np.testing.assert_allclose(asyncio.run(chunks()), whole, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def limited_server(bundled):
    """One server for the table below: at most 50 time steps."""
    port = free_port()
    server = ServerProcess(["--grpc-port", str(port), "--max-time-steps", "50"])
    yield server, f"127.0.0.1:{port}"
    server.stop()


BAD_REQUESTS = [
    # (what, model, inputs, sequence parameters)
    ("an unknown model", "nope", [("inputs", np.zeros((1, 3, 9), np.float32), "FP32")], {}),
    ("a wrong width", "copy", [("inputs", np.zeros((1, 3, 4), np.float32), "FP32")], {}),
    ("an unknown input", "copy", [("inputs", np.zeros((1, 3, 9), np.float32), "FP32"),
                                  ("extra", np.zeros((1,), np.float32), "FP32")], {}),
    ("NaN in the input", "copy", [("inputs", np.full((1, 3, 9), np.nan, np.float32), "FP32")],
     {}),
    ("too many time steps", "copy", [("inputs", np.zeros((1, 60, 9), np.float32), "FP32")], {}),
    ("too many memory rows", "copy", [("inputs", np.zeros((1, 3, 9), np.float32), "FP32"),
                                      ("memory_size", np.array([4096], np.int32), "INT32")], {}),
    ("a sequence never started", "copy", [("inputs", np.zeros((1, 3, 9), np.float32), "FP32")],
     {"sequence_id": 99}),
    ("an empty sequence", "copy", [("inputs", np.zeros((1, 0, 9), np.float32), "FP32")], {}),
]


@pytest.mark.parametrize("what,model,inputs,sequence", BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_the_grpc_status_of_their_http_status(limited_server, what, model,
                                                                inputs, sequence):
    server, address = limited_server
    body = {"inputs": [{"name": n, "shape": list(a.shape), "datatype": d,
                        "data": [None if np.isnan(v) else v for v in a.ravel().tolist()]
                        if d == "FP32" else a.ravel().tolist()} for n, a, d in inputs]}
    if sequence:
        body["parameters"] = sequence
    http_status = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)
    if what == "NaN in the input":  # JSON has no NaN: send the same values in binary
        raw = inputs[0][1].tobytes()
        head = json.dumps({"inputs": [{"name": "inputs", "shape": [1, 3, 9], "datatype": "FP32",
                                       "parameters": {"binary_data_size": len(raw)}}]}).encode()
        http_status = httpx.post(f"{server.url}/v2/models/{model}/infer", content=head + raw,
                                 headers={"Inference-Header-Content-Length": str(len(head))},
                                 timeout=30)
    assert 400 <= http_status.status_code < 500, http_status.text
    rpc = grpcclient.InferenceServerClient(address)
    tensors = [tensor(grpcclient, a, n, d) for n, a, d in inputs]
    with pytest.raises(InferenceServerException) as caught:
        rpc.infer(model, tensors, **sequence)
    expected = GRPC_CODES[http_status.status_code]
    assert caught.value.status() == f"StatusCode.{expected.name}", caught.value.message()
    assert caught.value.message() == http_status.json()["error"]


def test_the_api_key_guards_grpc_but_health(grpc_server, bundled):
    server, address = grpc_server("--api-key", "s3cret")
    rpc = grpcclient.InferenceServerClient(address)
    assert rpc.is_server_live() and rpc.is_server_ready()
    x = task_inputs("copy")
    with pytest.raises(InferenceServerException) as caught:
        rpc.infer("copy", [tensor(grpcclient, x)])
    assert caught.value.status() == "StatusCode.UNAUTHENTICATED"
    for headers in ({"authorization": "Bearer s3cret"}, {"x-api-key": "s3cret"}):
        assert rpc.infer("copy", [tensor(grpcclient, x)], headers=headers).as_numpy(
            "probabilities").shape == (2, x.shape[1], 8)


def test_sigterm_drains_a_grpc_call_in_flight(grpc_server, bundled):
    server, address = grpc_server("--max-time-steps", "4001", "--max-memory-size", "4096")
    x = np.zeros((8, 4001, 9), np.float32)  # 2048 rows: a run of a few seconds
    result: dict = {}

    def call():
        try:
            result["answer"] = grpcclient.InferenceServerClient(address).infer(
                "copy", [tensor(grpcclient, x)], outputs=[
                    grpcclient.InferRequestedOutput("probabilities")])
        except Exception as err:  # noqa: BLE001 - reported below
            result["error"] = err

    thread = threading.Thread(target=call)
    thread.start()
    wait_until(lambda: metric(server.metrics(), "ntm_requests_in_flight",
                              'model="copy",protocol="grpc"') == 1, "the gRPC call in flight")
    assert server.stop() == 0
    thread.join(60)
    assert "error" not in result, result.get("error")
    assert result["answer"].as_numpy("probabilities").shape == (8, 4001, 8)


def test_grpc_port_must_differ_from_http(bundled):
    from click.testing import CliRunner

    from ntm.cli.main import cli

    port = free_port()
    result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--grpc-port", str(port)])
    assert result.exit_code == 2 and "is the HTTP port" in result.output



def test_the_v2_client_example_speaks_grpc(grpc_server, bundled):
    import subprocess
    import sys

    from tests.serving.conftest import EXAMPLES, REPO

    server, address = grpc_server()
    request = EXAMPLES / "copy.json"
    run = subprocess.run([sys.executable, str(REPO / "examples" / "v2_client.py"), "--grpc",
                          "--url", address, "--model", "copy", str(request)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["output"] == json.loads(request.read_text())["sequence"]


def test_grpc_calls_get_a_request_id_and_an_access_log_line(grpc_server, bundled):
    server, address = grpc_server("--model", "copy")
    rpc = grpcclient.InferenceServerClient(address)
    rpc.infer("copy", [tensor(grpcclient, task_inputs("copy"))], headers={"x-request-id": "g-1"})
    wait_until(lambda: any(line.startswith("gRPC /inference.GRPCInferenceService/ModelInfer 200")
                           and "model=copy" in line and "id=g-1" in line
                           for line in server.lines), "the gRPC call's access log line")


def test_grpc_returns_the_request_id_with_the_status(grpc_server, bundled):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    server, address = grpc_server("--model", "copy")
    x = task_inputs("copy", batch=1)
    request = service_pb2.ModelInferRequest(model_name="copy")
    request.inputs.add(name="inputs", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.tobytes())
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(request, metadata=(("x-request-id", "g-2"),))
        assert ("x-request-id", "g-2") in call.trailing_metadata()
        _, call = stub.ModelInfer.with_call(request)
        made = dict(call.trailing_metadata())["x-request-id"]
        assert len(made) == 32
