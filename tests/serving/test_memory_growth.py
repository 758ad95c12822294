"""Memory that grows with the request, and answers that say when they extrapolate: the runtime,
``ntm predict`` and a real ``ntm serve``."""

import json

import httpx
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ntm.cli.main import cli
from ntm.contract.tasks import Difficulty
from ntm.serving.errors import ModelLoadError, Unprocessable
from ntm.serving.runtime import ModelRuntime, RuntimeOptions
from ntm.serving.plane import predict_tasks
from tests.serving.conftest import metric

BASELINE = (Path(__file__).resolve().parents[2] / "benchmarks" / "baseline"
            / "copy-fixed-memory.onnx")  # exported before memory could grow


def copy_request(length: int, seed: int = 0) -> dict:
    bits = np.random.default_rng(seed).integers(0, 2, (length, 8))
    return {"sequence": bits.tolist()}


@pytest.mark.parametrize("length, rows", [(1, 16), (14, 16), (15, 32), (30, 32), (31, 64),
                                          (62, 64), (63, 128)])
def test_each_request_gets_the_smallest_bucket_that_holds_it(tiny_exports, length, rows):
    """Trained with 16 rows: a copy of L vectors needs L + 2 rows; buckets 16, 32, 64, ..."""
    runtime = ModelRuntime(tiny_exports["dynamic"])
    [answer] = predict_tasks(runtime, [copy_request(length)])
    assert answer["memory_size"] == rows


def test_a_request_past_the_largest_memory_is_refused_naming_the_limit(tiny_exports):
    runtime = ModelRuntime(tiny_exports["dynamic"], options=RuntimeOptions(max_memory_size=40))
    assert predict_tasks(runtime, [copy_request(30)])[0]["memory_size"] == 32
    with pytest.raises(Unprocessable, match="needs 33 memory rows; the limit is 32"):
        predict_tasks(runtime, [copy_request(31)])


@pytest.mark.parametrize("length, within", [(1, True), (4, True), (5, False), (40, False)])
def test_within_training_range_at_the_edges(tiny_exports, length, within):
    runtime = ModelRuntime(tiny_exports["dynamic"])  # trained on lengths 1-4
    assert predict_tasks(runtime, [copy_request(length)])[0]["within_training_range"] is within


def test_repeat_copy_and_recall_are_flagged_past_their_trained_counts(bundled):
    rc = ModelRuntime(bundled["repeat-copy"])  # lengths 1-10, repeats 1-10
    seq = copy_request(3)["sequence"]
    flags = [a["within_training_range"] for a in predict_tasks(rc, 
        [{"sequence": seq, "repeats": n} for n in (10, 11, 1000)])]
    assert flags == [True, False, False]
    recall = ModelRuntime(bundled["recall"])  # 2-6 items
    rng = np.random.default_rng(3)
    requests = [recall.task.request_example(rng, Difficulty(n))[0] for n in (6, 7)]
    assert [a["within_training_range"] for a in predict_tasks(recall, requests)] == [True, False]


def test_requests_of_different_sizes_run_apart_and_equal_runs_alone(tiny_exports):
    runtime = ModelRuntime(tiny_exports["dynamic"])
    requests = [copy_request(n, seed=n) for n in (3, 20, 2, 40)]
    together = predict_tasks(runtime, requests)
    assert [a["memory_size"] for a in together] == [16, 32, 16, 64]
    for request, answer in zip(requests, together):
        [alone] = predict_tasks(runtime, [request])
        np.testing.assert_allclose(answer["probabilities"], alone["probabilities"], atol=1e-5)


def test_memory_size_option_fixes_the_rows(tiny_exports):
    runtime = ModelRuntime(tiny_exports["dynamic"], options=RuntimeOptions(memory_size=64))
    assert [a["memory_size"] for a in predict_tasks(runtime, [copy_request(2), copy_request(40)])] \
        == [64, 64]
    with pytest.raises(ModelLoadError, match="between the 16 rows"):
        ModelRuntime(tiny_exports["dynamic"], options=RuntimeOptions(memory_size=8))
    with pytest.raises(ModelLoadError, match="fixed at 16 rows"):
        ModelRuntime(tiny_exports["fixed"], options=RuntimeOptions(memory_size=64))


def test_an_export_from_before_memory_growth_still_serves_at_its_rows():
    runtime = ModelRuntime(BASELINE)
    assert not runtime.grows
    [short, long] = predict_tasks(runtime, [copy_request(10), copy_request(200)])
    assert short["output"] == copy_request(10)["sequence"] and short["memory_size"] == 128
    assert long["memory_size"] == 128 and long["within_training_range"] is False


def test_the_bundled_copy_model_copies_far_past_its_training_range(bundled):
    runtime = ModelRuntime(bundled["copy"])  # trained on lengths 1-20 with 128 rows
    requests = [copy_request(n, seed=n) for n in (150, 300)]
    answers = predict_tasks(runtime, requests)
    assert [a["memory_size"] for a in answers] == [256, 512]
    for request, answer in zip(requests, answers):
        assert answer["output"] == request["sequence"]
        assert answer["within_training_range"] is False


def test_predict_cli_flags_and_limits(bundled, tmp_path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps([copy_request(150), copy_request(5)]))
    result = CliRunner().invoke(cli, ["predict", str(path)])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)["predictions"]
    assert [(a["within_training_range"], a["memory_size"]) for a in answers] == \
        [(False, 256), (True, 128)]
    pretty = CliRunner().invoke(cli, ["predict", str(path), "--pretty"])
    assert pretty.exit_code == 0, pretty.output
    first, second = pretty.output.split("request 1")
    assert "EXTRAPOLATED: beyond the training range (length 1-20)" in first
    assert "memory rows: 256" in first and "output equals input: yes" in first
    assert "EXTRAPOLATED" not in second
    limited = CliRunner().invoke(cli, ["predict", str(path), "--max-memory-size", "128"])
    assert limited.exit_code == 1
    assert "instances[0]: needs 152 memory rows; the limit is 128" in limited.output
    assert "Traceback" not in limited.output


def test_server_grows_memory_limits_it_and_says_where_answers_stand(tiny_exports, bundled,
                                                                    start_server):
    server = start_server("--model", f"tiny={tiny_exports['dynamic']}", "--model",
                          f"copy={bundled['copy']}", "--max-memory-size", "256")
    long, short = copy_request(120, seed=1), copy_request(3)
    r = httpx.post(server.url + "/v1/models/copy:predict",
                   json={"instances": [long, short]}, timeout=60)
    assert r.status_code == 200, r.text
    [a, b] = r.json()["predictions"]
    assert a["output"] == long["sequence"] and b["output"] == short["sequence"]
    assert (a["memory_size"], a["within_training_range"]) == (128, False)
    assert (b["memory_size"], b["within_training_range"]) == (128, True)
    r = httpx.post(server.url + "/v1/models/copy:predict", json=copy_request(200, seed=2),
                   timeout=60)
    assert r.status_code == 200 and r.json()["predictions"][0]["memory_size"] == 256
    assert r.json()["predictions"][0]["output"] == copy_request(200, seed=2)["sequence"]
    r = httpx.post(server.url + "/v1/models/copy:predict", json=copy_request(300), timeout=60)
    assert r.status_code == 422
    assert r.json()["error"] == "request: needs 302 memory rows; the limit is 256 " \
                                "(--max-memory-size)"
    text = server.metrics()
    assert metric(text, "ntm_sequences_total",
                  'memory_size="256",model="copy",within_training_range="false"') == 1
    assert metric(text, "ntm_sequences_total",
                  'memory_size="128",model="copy",within_training_range="true"') == 1

    # V2: rows from the time steps, or asked for through the optional memory_size input.
    x = np.zeros((2, 31, 9), np.float32)  # 31 steps hold a copy of 15: 17 rows -> 32
    body = {"inputs": [{"name": "inputs", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}]}
    r = httpx.post(server.url + "/v2/models/tiny/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["parameters"] == {"within_training_range": False, "memory_size": 32}
    attention = next(o for o in r.json()["outputs"] if o["name"] == "attention")
    assert attention["shape"] == [2, 31, 2, 32]
    body["inputs"].append({"name": "memory_size", "datatype": "INT32", "shape": [1],
                           "data": [64]})
    r = httpx.post(server.url + "/v2/models/tiny/infer", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["parameters"]["memory_size"] == 64
    body["inputs"][1]["data"] = [512]
    r = httpx.post(server.url + "/v2/models/tiny/infer", json=body, timeout=60)
    assert r.status_code == 422 and "takes 16 to 256" in r.json()["error"]
    short = np.zeros((1, 9, 9), np.float32)  # the longest trained copy: 4 vectors, 9 steps
    r = httpx.post(server.url + "/v2/models/tiny/infer", json={"inputs": [
        {"name": "inputs", "datatype": "FP32", "shape": [1, 9, 9],
         "data": short.ravel().tolist()}]}, timeout=60)
    assert r.json()["parameters"] == {"within_training_range": True, "memory_size": 16}
