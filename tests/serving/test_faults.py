"""Faults the server must survive: broken model files at start, a model that fails at inference
for some requests, slow clients and clients that hang up mid-request."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest


onnx = pytest.importorskip("onnx")


def strip_metadata(src, dst):
    model = onnx.load(str(src))
    del model.metadata_props[:]
    onnx.save(model, str(dst))


def poison(src, dst, channel: int = 0):
    """A copy of ``src`` that fails inside onnxruntime whenever any input vector has a 1 in
    ``channel``: an out-of-range Gather index computed from the data (ntm metadata kept)."""
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    graph = model.graph
    producer = next(n for n in graph.node if "probabilities" in n.output)
    producer.output[list(producer.output).index("probabilities")] = "probabilities_raw"
    graph.initializer.extend([
        helper.make_tensor("poison_channel", TensorProto.INT64, [1], [channel]),
        helper.make_tensor("poison_scale", TensorProto.INT64, [], [1000]),
        helper.make_tensor("poison_table", TensorProto.FLOAT, [1], [0.0]),
    ])
    graph.node.extend([
        helper.make_node("Gather", ["inputs", "poison_channel"], ["poison_bits"], axis=2),
        helper.make_node("ReduceMax", ["poison_bits"], ["poison_max"], keepdims=0),
        helper.make_node("Cast", ["poison_max"], ["poison_any"], to=TensorProto.INT64),
        helper.make_node("Mul", ["poison_any", "poison_scale"], ["poison_index"]),
        helper.make_node("Gather", ["poison_table", "poison_index"], ["poison_zero"]),
        helper.make_node("Add", ["probabilities_raw", "poison_zero"], ["probabilities"]),
    ])
    onnx.save(model, str(dst))


def start_fails(model_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ntm.cli.main", "serve", "--port", "0", "--model",
                           str(model_path)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("kind", ["missing", "truncated", "not-onnx", "no-metadata"])
def test_bad_model_file_fails_at_start_with_one_line_naming_it(tmp_path, bundled, kind):
    path = tmp_path / f"{kind}.onnx"
    if kind == "truncated":
        data = bundled["copy"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not-onnx":
        path.write_text("this is not a model\n")
    elif kind == "no-metadata":
        strip_metadata(bundled["copy"], path)
    run = start_fails(path)
    assert run.returncode == 1, run.stderr
    assert f"{kind}.onnx" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def copy_request(rng, length: int, channel0: bool) -> dict:
    bits = rng.integers(0, 2, (length, 8))
    bits[:, 0] = 0
    if channel0:
        bits[length // 2, 0] = 1
    return {"sequence": bits.tolist()}


@pytest.mark.parametrize("batching", [True, False])
def test_a_request_that_breaks_the_model_fails_alone(tmp_path, bundled, start_server, batching):
    path = tmp_path / "poisoned.onnx"
    poison(bundled["copy"], path)
    args = ["--model", f"copy={path}", "--max-queue-delay-ms", "50"]
    server = start_server(*(args + ([] if batching else ["--no-batching"])))
    rng = np.random.default_rng(0)
    requests = [copy_request(rng, int(rng.integers(3, 12)), channel0=i % 3 == 0)
                for i in range(12)]

    def call(request):
        return httpx.post(f"{server.url}/v1/models/copy:predict",
                          json={"instances": [request]}, timeout=30)

    with ThreadPoolExecutor(len(requests)) as pool:  # concurrent: they share batches
        responses = list(pool.map(call, requests))
    for i, (request, r) in enumerate(zip(requests, responses)):
        if i % 3 == 0:
            assert r.status_code == 500, r.text
            assert "failed" in r.json()["error"]
        else:
            assert r.status_code == 200, r.text
            assert r.json()["predictions"][0]["output"] == request["sequence"]
    ok = call(copy_request(rng, 5, channel0=False))
    assert ok.status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'kind="server"' in metrics


def test_slow_and_vanishing_clients_do_not_stall_others(start_server, bundled):
    server = start_server("--model", "copy")
    body = b'{"instances": [{"sequence": [[1, 0, 1, 0, 1, 0, 1, 0]]}]}'
    head = (f"POST /v1/models/copy:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(head + body[:10])  # ... and never the rest
    for _ in range(5):  # clients that hang up before the answer
        gone = socket.create_connection(("127.0.0.1", server.port))
        gone.sendall(head + body)
        gone.close()
    try:
        start = time.perf_counter()
        for _ in range(5):
            r = httpx.post(f"{server.url}/v1/models/copy:predict", content=body,
                           headers={"Content-Type": "application/json"}, timeout=10)
            assert r.status_code == 200
            assert r.json()["predictions"][0]["output"] == [[1, 0, 1, 0, 1, 0, 1, 0]]
        assert time.perf_counter() - start < 5
    finally:
        slow.close()
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
