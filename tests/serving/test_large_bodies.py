"""A large request body is decoded on a worker thread: while it parses, the server goes on
answering other requests (in process, observed with events, no timing), and its answers and
errors are the same as a small body's (real ``ntm serve`` process)."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np

from ntm.contract.tasks import Difficulty, get_task
from ntm.serving import jsondoc
from ntm.serving.http import OFF_LOOP_BYTES


def copy_envelope(count: int, length: int, seed: int = 0) -> tuple[bytes, np.ndarray]:
    bits = np.random.default_rng(seed).integers(0, 2, (count, length, 8))
    body = json.dumps({"instances": [{"sequence": b.tolist()} for b in bits]}).encode()
    return body, bits


def test_other_requests_are_answered_while_a_large_body_parses(bundled, monkeypatch):
    from ntm.serving.app import create_app
    from ntm.serving.plane import DataPlane
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import ServerSettings

    big, bits = copy_envelope(64, 200)
    small, _ = copy_envelope(1, 5, seed=1)
    assert len(big) >= OFF_LOOP_BYTES > len(small)
    started, answered = threading.Event(), threading.Event()
    real_loads = jsondoc.loads

    def loads(data, what="request"):
        if len(data) >= OFF_LOOP_BYTES:
            started.set()
            # Held until the small request has its answer: on the event loop this would
            # block that answer, and the wait would time out.
            assert answered.wait(60), "the large body's decode held the event loop"
        return real_loads(data, what)

    monkeypatch.setattr(jsondoc, "loads", loads)
    plane = DataPlane([ModelRuntime(bundled["copy"])], ServerSettings())

    async def main():
        await plane.start()
        try:
            transport = httpx.ASGITransport(app=create_app(plane))
            async with httpx.AsyncClient(transport=transport, base_url="http://ntm",
                                         timeout=120) as client:
                url = "/v1/models/copy:predict"
                large = asyncio.create_task(client.post(url, content=big))
                assert await asyncio.to_thread(started.wait, 60), "the large body never parsed"
                quick = await client.post(url, content=small)
                answered.set()
                return quick, await large
        finally:
            await plane.stop()

    quick, large = asyncio.run(main())
    assert quick.status_code == 200 and len(quick.json()["predictions"]) == 1
    assert large.status_code == 200, large.text
    predictions = large.json()["predictions"]
    assert len(predictions) == 64
    assert predictions[7]["output"] == bits[7].tolist()  # the bundled model copies length 200


def test_a_large_body_gets_the_same_answers_and_errors_as_a_small_one(start_server):
    server = start_server("--model", "copy")
    url = f"{server.url}/v1/models/copy:predict"
    big, bits = copy_envelope(64, 200, seed=2)
    assert len(big) >= OFF_LOOP_BYTES
    answer = httpx.post(url, content=big, timeout=120)
    assert answer.status_code == 200
    assert [p["output"] for p in answer.json()["predictions"]] == bits.tolist()
    # Malformed past the threshold: the worker thread's error is the same 400.
    assert big.endswith(b"]]}]}")
    broken = big[:-5] + b", NaN]]}]}"  # a NaN in the last row of the last sequence
    response = httpx.post(url, content=broken, timeout=120)
    assert response.status_code == 400
    assert "NaN is not JSON" in response.json()["error"]
    # V2: a large raw-tensor body decodes off the loop as well.
    batch = get_task("copy").fixed_batch(np.random.default_rng(3), 64, Difficulty(100))
    x = batch.inputs
    body = json.dumps({"inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}],
                       "outputs": [{"name": "probabilities"}]}).encode()
    assert len(body) >= OFF_LOOP_BYTES
    v2 = httpx.post(f"{server.url}/v2/models/copy/infer", content=body, timeout=120)
    assert v2.status_code == 200, v2.text
    out = v2.json()["outputs"][0]
    probabilities = np.asarray(out["data"], np.float32).reshape(out["shape"])
    scored = batch.mask > 0
    assert ((probabilities > 0.5) == (batch.targets > 0.5))[scored].all()
