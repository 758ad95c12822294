"""``ntm serve`` as a real process on loopback, with real clients (httpx, tritonclient)."""

from __future__ import annotations

import json
import signal
import socket
import time

import httpx
import numpy as np
import pytest

from ntm.contract.tasks import Difficulty
from ntm.serving.runtime import ModelRuntime
from ntm.serving.plane import predict_tasks
from tests.serving.conftest import EXAMPLES, HeldBackPosts, metric, wait_until


def recall_requests(n: int, seed: int = 0):
    runtime_task = __import__("ntm.contract.tasks", fromlist=["get_task"]).get_task("recall")
    rng = np.random.default_rng(seed)
    return [runtime_task.request_example(rng, Difficulty(int(rng.integers(2, 13))))
            for _ in range(n)]


def predict(url, model, instances, **kw):
    return httpx.post(f"{url}/v1/models/{model}:predict", json={"instances": instances},
                      timeout=30, **kw)


def in_flight(server, model: str, protocol: str = "v1") -> float:
    return metric(server.metrics(), "ntm_requests_in_flight",
                  f'model="{model}",protocol="{protocol}"')


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_task_api_metadata_and_openapi(start_server, bundled):
    server = start_server("--model", "recall")
    pairs = recall_requests(5)
    r = predict(server.url, "recall", [p[0] for p in pairs])
    assert r.status_code == 200, r.text
    assert [a["item"] for a in r.json()["predictions"]] == [p[1]["item"] for p in pairs]
    status = httpx.get(f"{server.url}/v1/models/recall").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    md = httpx.get(f"{server.url}/v1/models/recall/metadata").json()
    assert md["metadata"]["ntm"]["ntm.task"]["task"] == "recall"
    assert httpx.get(f"{server.url}/v2").json()["extensions"] == ["binary_tensor_data"]
    v2 = httpx.get(f"{server.url}/v2/models/recall").json()
    assert v2["inputs"][0] == {"name": "inputs", "datatype": "FP32", "shape": [-1, -1, 8]}
    assert httpx.get(f"{server.url}/v2/models/recall/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "/v1/models/{name}:predict" in paths and "/v2/models/{name}/infer" in paths


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_http(start_server, bundled, binary):
    import tritonclient.http as triton

    server = start_server("--model", "recall")
    runtime = ModelRuntime(bundled["recall"])
    x = runtime.task.fixed_batch(np.random.default_rng(3), 5, Difficulty(6)).inputs
    expected_p, expected_a = runtime.run(x)
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("recall")
    metadata = client.get_model_metadata("recall")
    assert metadata["platform"] == "onnxruntime_onnx"
    parameters = dict(metadata["parameters"])
    assert parameters.pop("engine") in ("fused", "standard")  # fused when the kernel is built
    assert parameters == {"stateful": True, "memory": True, "memory_grows": True,
                          "max_trained_time_steps": 32}  # its longest episode
    tensor = triton.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
               triton.InferRequestedOutput("attention", binary_data=binary)]
    result = client.infer("recall", [tensor], outputs=outputs)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected_p, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("attention"), expected_a, atol=1e-6)
    # tritonclient's defaults: binary inputs, no outputs named -> all outputs in binary.
    default = client.infer("recall", [tensor])
    np.testing.assert_allclose(default.as_numpy("probabilities"), expected_p, atol=1e-6)


def test_concurrent_requests_are_batched_and_answered_as_alone(start_server, bundled):
    server = start_server("--model", "recall", "--max-queue-delay-ms", "20")
    pairs = recall_requests(64, seed=5)  # 2..12 items: mixed lengths
    sequential = [predict(server.url, "recall", [req]).json()["predictions"][0]
                  for req, _ in pairs]
    before = httpx.get(f"{server.url}/metrics").text
    # All 64 bodies are released together once the server has every request: they reach the
    # batcher together and merge, however busy the machine.
    posts = HeldBackPosts(f"{server.url}/v1/models/recall:predict",
                          [json.dumps({"instances": [request]}).encode() for request, _ in pairs])
    try:
        wait_until(lambda: in_flight(server, "recall") == len(pairs),
                   f"the server to receive all {len(pairs)} requests")
    finally:
        parallel = posts.release()
    assert all(getattr(r, "status_code", None) == 200 for r in parallel), parallel
    answers = [r.json()["predictions"][0] for r in parallel]
    # The same answer bits; probabilities agree to float32 rounding (BLAS blocking differs
    # with the batch size, so the last digit of a probability may move).
    assert [a["item"] for a in answers] == [s["item"] for s in sequential]
    np.testing.assert_allclose([np.ravel(a["probabilities"]) for a in answers],
                               [np.ravel(s["probabilities"]) for s in sequential], atol=1e-5)
    assert [s["item"] for s in sequential] == [a["item"] for _, a in pairs]
    text = httpx.get(f"{server.url}/metrics").text
    runs = metric(text, "ntm_batch_size_count", 'model="recall"') - \
        metric(before, "ntm_batch_size_count", 'model="recall"')
    sequences = metric(text, "ntm_batch_size_sum", 'model="recall"') - \
        metric(before, "ntm_batch_size_sum", 'model="recall"')
    assert sequences == 64 and runs < 64, (runs, sequences)  # some batch held > 1 sequence
    assert metric(text, "ntm_requests_total", 'model="recall",protocol="v1",status="200"') == 128
    assert "ntm_queue_time_seconds_bucket" in text and "ntm_request_latency_seconds" in text


BINARY_HEAD = (b'{"inputs": [{"name": "inputs", "shape": [1, 1, 8], "datatype": "FP32",'
               b' "parameters": {"binary_data_size": 32}}]}')
BAD_INPUTS = [
    # (method, path, body, headers, status, message)
    ("POST", "/v1/models/recall:predict", b"{nope", {}, 400, "not valid JSON"),
    ("POST", "/v1/models/recall:predict", b'{"instances": []}', {}, 400, "at least one request"),
    ("POST", "/v1/models/recall:predict", b'{"instances": 3}', {}, 400, "instances: must be a list"),
    ("POST", "/v1/models/recall:predict", b'{"instances": [{"items": [], "query": []}]}', {},
     400, "items: must be a list"),
    ("POST", "/v1/models/recall:predict",
     b'{"instances": [{"items": [], "query": []}, {"items": [], "query": []}]}', {},
     400, "instances[0].items: must be a list"),
    ("POST", "/v1/models/recall:predict", b'[{"items": [[[0,0,0,0,0,0]]], "query": 5}]', {}, 400,
     "items"),
    ("POST", "/v1/models/recall:predict", b'{"instances": [{"sequence": [[1]]}]}', {}, 400,
     "items: is required"),
    ("POST", "/v1/models/recall:predict", b'"text"', {}, 400, "must be a JSON object"),
    ("POST", "/v1/models/nosuch:predict", b"{}", {}, 404, "model 'nosuch' is not served"),
    ("GET", "/v1/models/nosuch", None, {}, 404, "not served"),
    ("GET", "/v2/models/nosuch/ready", None, {}, 404, "not served"),
    ("GET", "/nowhere", None, {}, 404, "no such endpoint"),
    ("DELETE", "/v2/models/recall", None, {}, 405, "not allowed"),
    ("GET", "/v1/models/recall:predict", None, {}, 405, "method GET not allowed"),
    ("POST", "/v2/models/recall/infer", b"{}", {}, 400, "inputs: must be a non-empty list"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "inputs", "shape": [1, 0, 8], "datatype": "FP32", "data": []}]}', {},
     400, "at least one time step"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "inputs", "shape": [1, 2, 8], "datatype": "FP32", "data": [1]}]}', {},
     400, "do not fill shape"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "inputs", "shape": [1, 1, 7], "datatype": "FP32",'
     b' "data": [0,0,0,0,0,0,0]}]}', {}, 400, "shape [batch, time, 8]"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "x", "shape": [1, 1, 8], "datatype": "FP32",'
     b' "data": [0,0,0,0,0,0,0,0]}]}', {}, 400,
     "takes the input 'inputs' and optionally 'memory_size'"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "inputs", "shape": [1, 1, 8], "datatype": "STRING", "data": []}]}',
     {}, 400, "datatype"),
    ("POST", "/v2/models/recall/infer", BINARY_HEAD + b"\0" * 8,
     {"Inference-Header-Content-Length": str(len(BINARY_HEAD))}, 400, "runs past the body"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "inputs", "shape": [1, 1, 8], "datatype": "FP32",'
     b' "data": [0,0,0,0,0,0,0,0]}], "outputs": [{"name": "memory"}]}', {}, 400,
     "'memory' is not an output"),
    ("POST", "/v2/models/recall/infer",
     b'{"inputs": [{"name": "inputs", "shape": [65, 1, 8], "datatype": "FP32",'
     b' "parameters": {"binary_data_size": 2080}}]}' , {"Inference-Header-Content-Length": "x"},
     400, "must be an integer"),
    ("POST", "/v2/models/recall/versions/7/infer", b"{}", {}, 404, "version '7'"),
]


def test_bad_inputs_get_4xx_and_the_server_keeps_answering(start_server, bundled):
    server = start_server("--model", "recall", "--max-time-steps", "100")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for method, path, body, headers, status, message in BAD_INPUTS:
            r = client.request(method, path, content=body, headers=headers)
            assert r.status_code == status, (path, body, r.status_code, r.text)
            assert message in r.json()["error"], (path, body, r.text)
            assert status != 405 or r.headers["allow"], (path, r.headers)
        # Limits: too many time steps, a batch above the maximum.
        x = np.zeros((1, 101, 8), np.float32).ravel().tolist()
        r = client.post("/v2/models/recall/infer", json={"inputs": [
            {"name": "inputs", "shape": [1, 101, 8], "datatype": "FP32", "data": x}]})
        assert r.status_code == 422 and "limit is 100" in r.json()["error"]
        x = np.zeros((65, 1, 8), np.float32).ravel().tolist()
        r = client.post("/v2/models/recall/infer", json={"inputs": [
            {"name": "inputs", "shape": [65, 1, 8], "datatype": "FP32", "data": x}]})
        assert r.status_code == 422 and "limit is 64" in r.json()["error"]
        request, answer = recall_requests(1, seed=9)[0]
        r = client.post("/v1/models/recall:predict", json={"instances": [request]})
        assert r.status_code == 200 and r.json()["predictions"][0]["item"] == answer["item"]
        text = client.get("/metrics").text
        assert metric(text, "ntm_request_failures_total",
                      'kind="client",model="recall",protocol="v2"') >= 10
        assert 'status="500"' not in text


def test_body_limit_gives_413(start_server, bundled):
    server = start_server("--model", "recall", "--max-body-bytes", "2048")
    r = httpx.post(f"{server.url}/v1/models/recall:predict", content=b"x" * 4096)
    assert r.status_code == 413 and "limit of 2048 bytes" in r.json()["error"]


def test_api_key(start_server, bundled):
    server = start_server("--model", "recall", env={"NTM_API_KEY": "s3cret"})
    request = recall_requests(1)[0][0]
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"}):
        r = predict(server.url, "recall", [request], headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]
        assert httpx.get(f"{server.url}/metrics", headers=headers).status_code == 401
    assert predict(server.url, "recall", [request],
                   headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert predict(server.url, "recall", [request],
                   headers={"X-API-Key": "s3cret"}).status_code == 200


def test_sigterm_drains_in_flight_requests(start_server, bundled):
    """Requests the server has received when SIGTERM arrives are all answered, then it exits 0.

    Each request's body is held back until the server, shutting down, refuses new
    connections: every request is in flight across the signal whatever the machine's load."""
    server = start_server("--model", "recall", "--max-queue-delay-ms", "400")
    pairs = recall_requests(8, seed=11)
    posts = HeldBackPosts(f"{server.url}/v1/models/recall:predict",
                          [json.dumps({"instances": [request]}).encode() for request, _ in pairs])
    try:
        wait_until(lambda: in_flight(server, "recall") == len(pairs),
                   f"the server to receive all {len(pairs)} requests")
        server.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses_connections(server.port), "the server to stop accepting")
    finally:
        results = posts.release()
    code = server.proc.wait(60)
    assert code == 0, "".join(server.lines) + server.proc.stderr.read()
    assert [getattr(r, "status_code", r) for r in results] == [200] * len(pairs)
    assert [r.json()["predictions"][0]["item"] for r in results] == \
        [a["item"] for _, a in pairs]


def test_examples_via_http(start_server, bundled):
    server = start_server("--model", "recall")
    request = json.loads((EXAMPLES / "recall.json").read_text())
    r = httpx.post(f"{server.url}/v1/models/recall:predict", json=request)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_small_responses_are_not_held_back_by_nagle(start_server, bundled):
    """Nagle's algorithm on the server's connections made every response wait ~40 ms for the
    client's delayed ACK; with TCP_NODELAY a health check on loopback takes about 1 ms."""
    server = start_server()
    with httpx.Client() as client:
        client.get(server.url + "/v2/health/live")
        times = []
        for _ in range(9):
            start = time.perf_counter()
            assert client.get(server.url + "/v2/health/live").status_code == 200
            times.append(time.perf_counter() - start)
    # Nagle delays every round trip, so one fast one clears it; a busy machine slows some.
    assert min(times) < 0.02, f"fastest health round trip {min(times) * 1e3:.1f} ms"


@pytest.mark.parametrize("model", ["copy", "recall"])
def test_the_v2_client_example_runs_unchanged_against_ntm_serve(start_server, bundled, model):
    """examples/v2_client.py is the script a Triton or KServe user runs; only --url changes."""
    import subprocess
    import sys

    from tests.serving.conftest import REPO

    server = start_server()
    request = EXAMPLES / f"{model}.json"
    run = subprocess.run([sys.executable, "examples/v2_client.py", "--url",
                          f"127.0.0.1:{server.port}", "--model", model, str(request)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    expected = predict_tasks(ModelRuntime(bundled[model]), [json.loads(request.read_text())])[0]
    key = "output" if model == "copy" else "item"
    assert answer[key] == expected[key]


def test_every_request_gets_an_id_and_an_access_log_line(start_server, bundled):
    server = start_server("--model", "copy")
    body = {"instances": [{"sequence": [[0, 1, 0, 1, 0, 1, 0, 1]]}]}
    mine = httpx.post(f"{server.url}/v1/models/copy:predict", json=body,
                      headers={"x-request-id": "client-7"}, timeout=30)
    assert mine.status_code == 200 and mine.headers["x-request-id"] == "client-7"
    made = httpx.post(f"{server.url}/v1/models/nope:predict", json=body, timeout=30)
    assert made.status_code == 404 and len(made.headers["x-request-id"]) == 32
    wait_until(lambda: any("POST /v1/models/copy:predict 200" in line and "model=copy"
                           in line and "id=client-7" in line for line in server.lines),
               "the access log line of the first request")
    wait_until(lambda: any("404" in line and f"id={made.headers['x-request-id']}" in line
                           for line in server.lines), "the access log line of the 404")


def test_the_access_log_speaks_json_or_nothing(start_server, bundled):
    body = {"instances": [{"sequence": [[0, 1, 0, 1, 0, 1, 0, 1]]}]}
    as_json = start_server("--model", "copy", "--access-log", "json")
    httpx.post(f"{as_json.url}/v1/models/copy:predict", json=body, timeout=30)

    def logged():
        for line in as_json.lines:
            if line.startswith("{"):
                entry = json.loads(line)
                if entry["path"] == "/v1/models/copy:predict":
                    return entry
        return None

    entry = wait_until(logged, "a JSON access log line")
    assert entry["status"] == 200 and entry["model"] == "copy" and entry["method"] == "POST"
    assert entry["ms"] > 0 and len(entry["request_id"]) == 32
    quiet = start_server("--model", "copy", "--access-log", "off")
    answered = httpx.post(f"{quiet.url}/v1/models/copy:predict", json=body, timeout=30)
    assert answered.status_code == 200 and len(answered.headers["x-request-id"]) == 32
    assert quiet.stop() == 0
    assert not any("/v1/models/copy:predict" in line for line in quiet.lines)
