"""Stateful sequences: a model's memory kept across requests, on Triton's sequence protocol
(tritonclient, unmodified) and on the task API; every limit, and a restart."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest

from ntm.contract.tasks import Difficulty, get_task
from ntm.serving.runtime import ModelRuntime
from tests.serving.conftest import wait_until

triton = pytest.importorskip("tritonclient.http")


def copy_inputs(batch: int, length: int = 20, seed: int = 0) -> np.ndarray:
    return get_task("copy").fixed_batch(np.random.default_rng(seed), batch,
                                        Difficulty(length)).inputs


def infer(client, model, x, **sequence):
    tensor = triton.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(x))
    result = client.infer(model, [tensor], **sequence)
    return result.as_numpy("probabilities"), result.get_response()["parameters"]


def in_pieces(client, model, x, cuts, sequence_id):
    """x sent as pieces split at ``cuts`` (time steps), one sequence: the probabilities."""
    bounds = list(zip([0] + cuts, cuts + [x.shape[1]]))
    out = []
    for i, (a, b) in enumerate(bounds):
        p, _ = infer(client, model, x[:, a:b], sequence_id=sequence_id,
                     sequence_start=i == 0, sequence_end=i == len(bounds) - 1)
        out.append(p)
    return np.concatenate(out, axis=1)


def gauge(server, name: str) -> float:
    """An unlabelled sample of the server's /metrics."""
    match = re.search(rf"^{name} ([0-9.e+-]+)$", server.metrics(), re.M)
    assert match, f"/metrics has no {name}"
    return float(match.group(1))


def live(server) -> float:
    return gauge(server, "ntm_live_sequences")


def v2_post(server, model, x, **parameters):
    body = {"inputs": [{"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}], "parameters": parameters}
    return httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=60)


@pytest.fixture
def copy_server(start_server):
    return start_server("--model", "copy", "--model", "recall")


def test_three_pieces_answer_as_one_request(copy_server, bundled):
    """A length-20 copy sent as three requests of one sequence = the same copy sent whole,
    and the answer is the copy."""
    client = triton.InferenceServerClient(url=f"127.0.0.1:{copy_server.port}")
    x = copy_inputs(2)
    whole, params = infer(client, "copy", x)
    pieces = in_pieces(client, "copy", x, [7, 25], sequence_id=42)
    assert np.abs(pieces - whole).max() <= 1e-5
    assert np.array_equal(pieces[:, 21:] > 0.5, x[:, :20, :8] > 0.5)  # it copied
    assert live(copy_server) == 0  # sequence_end freed it


def test_interleaved_sequences_do_not_see_each_other(copy_server):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{copy_server.port}")
    xa, xb = copy_inputs(1, seed=1), copy_inputs(1, seed=2)
    expected = [infer(client, "copy", x)[0] for x in (xa, xb)]
    got = {"a": [], "b": []}
    for i, (a, b) in enumerate([(0, 10), (10, 30), (30, 41)]):
        for key, x in (("a", xa), ("b", xb)):
            p, params = infer(client, "copy", x[:, a:b], sequence_id=f"seq-{key}",
                              sequence_start=i == 0, sequence_end=i == 2)
            got[key].append(p)
            assert params["sequence_id"] == f"seq-{key}" and params["sequence_steps"] == b
        if i == 0:
            assert live(copy_server) == 2
    for key, want in zip("ab", expected):
        assert np.abs(np.concatenate(got[key], axis=1) - want).max() <= 1e-5


def test_recall_stored_in_one_request_and_queried_in_the_next(copy_server):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{copy_server.port}")
    task = get_task("recall")
    request, answer = task.request_example(np.random.default_rng(7), Difficulty(5))
    items = np.array(request["items"], np.float32)
    query = next(i for i in range(len(items)) if np.array_equal(items[i], request["query"]))
    stored = task.layout_items(items)[None]
    asked = task.layout_query(items[query])[None]
    infer(client, "recall", stored, sequence_id=5, sequence_start=True)
    p, params = infer(client, "recall", asked, sequence_id=5, sequence_end=True)
    assert ((p[0, -3:] > 0.5).astype(int) == np.array(answer["item"])).all()
    assert params["sequence_steps"] == stored.shape[1] + asked.shape[1]


def test_task_api_recall_in_parts(copy_server):
    task = get_task("recall")
    request, answer = task.request_example(np.random.default_rng(3), Difficulty(6))
    url = f"{copy_server.url}/v1/models/recall:predict"
    first = httpx.post(url, json={"items": request["items"][:4], "sequence_id": "s1",
                                  "start": True}).json()["predictions"][0]
    assert first["stored_items"] == 4 and "item" not in first
    more = httpx.post(url, json={"items": request["items"][4:],
                                 "sequence_id": "s1"}).json()["predictions"][0]
    assert more["stored_items"] == 6
    last = httpx.post(url, json={"query": request["query"], "sequence_id": "s1",
                                 "end": True}).json()["predictions"][0]
    assert last["item"] == answer["item"] and last["sequence_end"] is True
    assert last["memory_size"] == 128 and last["within_training_range"] is True
    whole = httpx.post(url, json=request).json()["predictions"][0]
    assert whole["item"] == last["item"]
    np.testing.assert_allclose(whole["probabilities"], last["probabilities"], atol=1e-5)
    again = httpx.post(url, json={"query": request["query"], "sequence_id": "s1"})
    assert again.status_code == 400 and "'s1'" in again.json()["error"] \
        and "ended" in again.json()["error"]
    bad = httpx.post(url, json={"query": request["items"][5], "sequence_id": "s2",
                                "start": True})
    assert bad.status_code == 400 and "at least 2 stored items" in bad.json()["error"]
    copy = httpx.post(f"{copy_server.url}/v1/models/copy:predict",
                      json={"sequence": [[1] * 8], "sequence_id": 3, "start": True})
    assert copy.status_code == 400 and "whole" in copy.json()["error"]


def test_limits_and_errors(start_server, tiny_exports):
    server = start_server("--model", "copy", "--model", f"plain={tiny_exports['dynamic']}",
                          "--max-sequences", "2")
    x = copy_inputs(1)
    unknown = v2_post(server, "copy", x[:, :5], sequence_id=77)
    assert unknown.status_code == 400 and "77" in unknown.json()["error"] \
        and "sequence_start" in unknown.json()["error"]
    assert v2_post(server, "copy", x, sequence_id=1, sequence_start=True).status_code == 200
    assert v2_post(server, "copy", x, sequence_id=2, sequence_start=True).status_code == 200
    full = v2_post(server, "copy", x, sequence_id=3, sequence_start=True)
    assert full.status_code == 429 and "--max-sequences" in full.json()["error"]
    assert live(server) == 2
    # a sequence keeps its batch and rows
    batch = v2_post(server, "copy", copy_inputs(2), sequence_id=1)
    assert batch.status_code == 400 and "batch of 1" in batch.json()["error"]
    body = {"inputs": [{"name": "inputs", "shape": [1, 3, 9], "datatype": "FP32",
                        "data": [0.0] * 27},
                       {"name": "memory_size", "shape": [1], "datatype": "INT32",
                        "data": [256]}], "parameters": {"sequence_id": 1}}
    rows = httpx.post(f"{server.url}/v2/models/copy/infer", json=body)
    assert rows.status_code == 400 and "fixed when it started" in rows.json()["error"]
    # ending one frees a place
    assert v2_post(server, "copy", x[:, :2], sequence_id=1, sequence_end=True).status_code == 200
    assert v2_post(server, "copy", x, sequence_id=3, sequence_start=True).status_code == 200
    # flags without an id, wrong types, a model exported without --stateful
    for parameters, words in [({"sequence_start": True}, "need a sequence_id"),
                              ({"sequence_id": True}, "sequence_id"),
                              ({"sequence_id": 4, "sequence_end": "yes"}, "sequence_end")]:
        response = v2_post(server, "copy", x, **parameters)
        assert response.status_code == 400 and words in response.json()["error"]
    plain = v2_post(server, "plain", copy_inputs(1, 3)[:, :, :9] * 0, sequence_id=9,
                    sequence_start=True)
    assert plain.status_code == 400 and "--stateful" in plain.json()["error"]
    # stateless requests are unaffected by the live sequences
    assert v2_post(server, "copy", x).status_code == 200


def test_idle_sequences_expire(start_server):
    server = start_server("--model", "copy", "--sequence-idle-s", "0.5")
    x = copy_inputs(1)
    assert v2_post(server, "copy", x[:, :10], sequence_id="idle",
                   sequence_start=True).status_code == 200
    assert live(server) == 1
    wait_until(lambda: live(server) == 0, "the idle sequence to expire")
    assert gauge(server, "ntm_sequences_expired") == 1
    late = v2_post(server, "copy", x[:, 10:], sequence_id="idle")
    assert late.status_code == 400 and "expired" in late.json()["error"]


def test_idle_sequences_are_freed_when_nobody_asks(bundled):
    """In process: the plane sweeps idle sequences on a clock; observed through the store's
    counter and its dict, neither of which purges when read."""
    import asyncio
    import time

    from ntm.serving.plane import DataPlane
    from ntm.serving.settings import ServerSettings
    from ntm.serving.v2codec import SequenceFlags

    runtime = ModelRuntime(bundled["copy"])
    x = copy_inputs(1)

    async def main():
        plane = DataPlane([runtime], ServerSettings(sequence_idle_s=0.2))
        await plane.start()
        try:
            await plane.infer("copy", {"inputs": x[:, :10]}, SequenceFlags("quiet", start=True))
            assert len(plane.sequences._live) == 1
            deadline = time.monotonic() + 60
            while plane.sequences.expired_total == 0:
                assert time.monotonic() < deadline, "waited 60 s for the sweep"
                await asyncio.sleep(0.02)
            return len(plane.sequences._live)
        finally:
            await plane.stop()

    assert asyncio.run(main()) == 0


def test_a_restart_forgets_sequences_and_says_so(start_server):
    first = start_server("--model", "copy")
    x = copy_inputs(1)
    assert v2_post(first, "copy", x[:, :10], sequence_id=8,
                   sequence_start=True).status_code == 200
    first.stop()
    second = start_server("--model", "copy")
    response = v2_post(second, "copy", x[:, 10:], sequence_id=8)
    assert response.status_code == 400
    assert "restart forgets every sequence" in response.json()["error"]


def test_requests_of_one_sequence_run_in_arrival_order(bundled):
    """In process: the parts of one sequence submitted together run one at a time in the
    order they came, so the answer is the sequence's, not a shuffle of its pieces."""
    import asyncio

    from ntm.serving.plane import DataPlane
    from ntm.serving.settings import ServerSettings
    from ntm.serving.v2codec import SequenceFlags

    runtime = ModelRuntime(bundled["copy"])
    x = copy_inputs(1)
    whole, _ = runtime.run(x)
    cuts = [(0, 5), (5, 9), (9, 20), (20, 33), (33, 41)]

    async def main():
        plane = DataPlane([runtime], ServerSettings())
        await plane.start()
        try:
            parts = [plane.infer("copy", {"inputs": x[:, a:b]},
                                 SequenceFlags("order", start=i == 0, end=i == len(cuts) - 1))
                     for i, (a, b) in enumerate(cuts)]
            return await asyncio.gather(*parts)
        finally:
            await plane.stop()

    results = asyncio.run(main())
    got = np.concatenate([tensors["probabilities"] for tensors, _ in results], axis=1)
    assert np.abs(got - whole).max() <= 1e-5
    assert [params["sequence_steps"] for _, params in results] == [5, 9, 20, 33, 41]


def guide() -> str:
    """The guide to stateful sequences (docs/sequences.md), whose examples are tested here."""
    from tests.serving.conftest import REPO

    return (REPO / "docs" / "sequences.md").read_text()


def test_the_guide_example_runs_and_prints_what_it_says(copy_server):
    import contextlib
    import io

    [code] = re.findall(r"^```python\n(.*?)^```", guide(), re.S | re.M)
    promised = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    code = code.replace("127.0.0.1:8080", f"127.0.0.1:{copy_server.port}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/sequences.md", "exec"), {})
    assert out.getvalue().strip().splitlines() == promised


def test_the_guide_curl_calls_answer_as_shown(copy_server):
    section = guide()
    bodies = [json.loads(b.replace("\n    ", " ")) for b in
              re.findall(r"recall:predict -d '(.*?)'\n", section, re.S)]
    shown = [line for line in section.splitlines() if line.startswith('{"predictions"')]
    assert len(bodies) == len(shown) == 2
    url = f"{copy_server.url}/v1/models/recall:predict"
    for body, line in zip(bodies, shown):
        answer = httpx.post(url, json=body).json()["predictions"][0]
        for key, value in re.findall(r'"(\w+)":(\[\[.*?\]\]|[^,\[\]{}]+)', line):
            if value != '"..."' and key != "probabilities":
                assert answer[key] == json.loads(value), key
