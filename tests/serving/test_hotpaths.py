"""The inference endpoints answered without FastAPI's routing (``ntm.serving.hotpaths``): which
requests it takes, that it answers them as the routes do, and that everything else passes on."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from ntm.serving import v1, v2
from ntm.serving.hotpaths import HotPaths, match


@pytest.mark.parametrize("path, expected", [
    ("/v1/models/copy:predict", (v1.predict, "copy")),
    ("/v1/models/repeat-copy:predict", (v1.predict, "repeat-copy")),
    ("/v2/models/recall/infer", (v2.counted_infer, "recall")),
    ("/v1/models/:predict", None),  # no name
    ("/v1/models/a/b:predict", None),  # a name is one path segment, as FastAPI's {name}
    ("/v2/models/copy/versions/1/infer", None),  # versioned: left to FastAPI
    ("/v2/models//infer", None),
    ("/v1/models/copy", None),
    ("/v2/models/copy/ready", None),
])
def test_match(path, expected):
    assert match(path) == expected


def test_inference_posts_are_answered_here_and_the_rest_reach_the_app(bundled):
    from starlette.responses import PlainTextResponse

    from ntm.serving.plane import DataPlane
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import ServerSettings

    plane = DataPlane([ModelRuntime(bundled["copy"], name="copy")], ServerSettings())
    reached = []

    async def app(scope, receive, send):  # stands in for FastAPI
        if scope["type"] == "http":
            reached.append((scope["method"], scope["path"]))
            await PlainTextResponse("app")(scope, receive, send)

    sequence = np.random.default_rng(0).integers(0, 2, (6, 8))
    x = np.zeros((1, 13, 9), np.float32)
    x[0, :6, :8], x[0, 6, 8] = sequence, 1.0
    v2_body = {"inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                           "data": x.ravel().tolist()}]}

    async def scenario():
        await plane.start()
        try:
            transport = httpx.ASGITransport(app=HotPaths(app, plane))
            async with httpx.AsyncClient(transport=transport, base_url="http://ntm") as client:
                return [
                    await client.post("/v1/models/copy:predict",
                                      json={"instances": [{"sequence": sequence.tolist()}]}),
                    await client.post("/v2/models/copy/infer", json=v2_body),
                    await client.post("/v1/models/nope:predict", json={"instances": []}),
                    await client.post("/v1/models/copy:predict", content=b"{not json"),
                    await client.get("/v1/models/copy:predict"),
                    await client.post("/v2/models/copy/versions/1/infer", json=v2_body),
                    await client.get("/metrics"),
                ]
        finally:
            await plane.stop()

    answers = asyncio.run(asyncio.wait_for(scenario(), 120))
    v1_answer, v2_answer, unknown, broken, *passed_on = answers
    assert v1_answer.status_code == 200
    assert v1_answer.json()["predictions"][0]["output"] == sequence.tolist()
    assert v2_answer.status_code == 200
    probs = next(o for o in v2_answer.json()["outputs"] if o["name"] == "probabilities")
    bits = (np.array(probs["data"]).reshape(probs["shape"])[0, 7:] > 0.5).astype(int)
    assert bits.tolist() == sequence.tolist()
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]
    assert [r.text for r in passed_on] == ["app"] * 3
    assert reached == [("GET", "/v1/models/copy:predict"),
                       ("POST", "/v2/models/copy/versions/1/infer"), ("GET", "/metrics")]
    counted = plane.metrics.requests.labels("copy", "v1", "200")._value.get()
    assert counted == 1  # answered here, counted as the route counts it


def test_an_unexpected_error_is_a_logged_500_in_the_error_schema(bundled, monkeypatch, caplog):
    """The hot paths sit in front of Starlette's error middleware: they answer a fault
    themselves, as the app's handler would."""
    from ntm.serving.app import create_app
    from ntm.serving.plane import DataPlane
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import ServerSettings

    async def broken(plane, name, request):
        raise RuntimeError("a fault")

    monkeypatch.setattr(v2, "counted_infer", broken)
    plane = DataPlane([ModelRuntime(bundled["copy"], name="copy")], ServerSettings())

    async def scenario():
        transport = httpx.ASGITransport(app=create_app(plane))
        async with httpx.AsyncClient(transport=transport, base_url="http://ntm") as client:
            return await client.post("/v2/models/copy/infer", json={"inputs": []})

    with caplog.at_level("ERROR"):
        answer = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error: RuntimeError"}
    assert answer.headers["x-request-id"]
    assert "a fault" in caplog.text
