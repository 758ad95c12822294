"""An exported LSTM baseline served like the NTM: ``ntm.load``, ``ntm predict`` and a real
``ntm serve`` (task API and V2) answer what onnxruntime gives run directly; the answers have no
attention and no memory rows, every reader of those copes, and bad requests get the NTM's 4xx
errors."""

from __future__ import annotations

import json
import socket

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import ntm
from ntm.cli.main import cli
from ntm.contract.tasks import get_task
from ntm.serving.errors import ServingError
from tests.serving.conftest import ServerProcess, metric

COPY = get_task("copy")


def requests_of(lengths, seed=0):
    """Copy requests of ``lengths`` vectors and their encoded inputs [time, 9] each."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        request = {"sequence": rng.integers(0, 2, (n, 8)).tolist()}
        out.append((request, COPY.encode(request).inputs))
    return out


def direct(path, x: np.ndarray) -> np.ndarray:
    """Probabilities of onnxruntime run directly on ``x`` [batch, time, 9]."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"inputs": x.astype(np.float32)})[0]


def answer_probabilities(answer, inputs):
    """The answer's probabilities: the steps after the delimiter."""
    return np.asarray(answer["probabilities"], np.float32), inputs.shape[0] - len(
        answer["probabilities"])


def assert_equal_to_direct(path, answers, pairs):
    for answer, (_, x) in zip(answers, pairs):
        p, start = answer_probabilities(answer, x)
        np.testing.assert_allclose(p, direct(path, x[None])[0, start:], atol=1e-5, rtol=0)


# -- in process ------------------------------------------------------------------------------
def test_load_and_predict_answer_as_onnxruntime_does(baseline_exports):
    pairs = requests_of([1, 4, 9, 30])  # inside and beyond the trained lengths 1-4
    with ntm.load(baseline_exports["dynamic"]) as model:
        assert model.name == "copy-lstm"
        described = model.describe()
        assert (described["architecture"], described["memory"], described["heads"]) == \
            ("lstm", None, None)
        answers = model.predict([{**r, "return_attention": True} for r, _ in pairs])
        probabilities, attention = model.runtime.run(pairs[1][1][None])
    assert_equal_to_direct(baseline_exports["dynamic"], answers, pairs)
    for answer, (request, _) in zip(answers, pairs):
        assert "attention" not in answer and "memory_size" not in answer
        assert len(answer["output"]) == len(request["sequence"])
    assert [a["within_training_range"] for a in answers] == [True, True, False, False]
    assert attention is None and probabilities.shape == (1, 9, 8)


def test_memory_options_are_refused_with_the_reason(baseline_exports):
    with pytest.raises(ServingError, match="the LSTM baseline, which has no memory rows"):
        ntm.load(baseline_exports["dynamic"], memory_size=64)
    with ntm.load(baseline_exports["dynamic"], max_memory_size=4096) as model:  # a limit
        assert model.predict({"sequence": [[1] * 8]})[0]["output"]


def test_ntm_predict_prints_the_answers_and_draws_no_rows(baseline_exports, tmp_path):
    pairs = requests_of([3, 12], seed=1)
    request_file = tmp_path / "in.json"
    request_file.write_text(json.dumps({"instances": [r for r, _ in pairs]}))
    model = str(baseline_exports["dynamic"])
    result = CliRunner().invoke(cli, ["predict", str(request_file), "--model", model])
    assert result.exit_code == 0, result.output
    assert_equal_to_direct(model, json.loads(result.output)["predictions"], pairs)
    pretty = CliRunner().invoke(cli, ["predict", str(request_file), "--model", model,
                                      "--pretty"])
    assert pretty.exit_code == 0 and "request 1 (copy-lstm" in pretty.output
    assert "memory rows" not in pretty.output and "EXTRAPOLATED" in pretty.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sequence": [[0, 1, 2, 0, 0, 0, 0, 0]]}))
    refused = CliRunner().invoke(cli, ["predict", str(bad), "--model", model])
    assert refused.exit_code == 1 and "sequence[0][2]: must be 0 or 1" in refused.output
    plot = CliRunner().invoke(cli, ["plot", "attention", "--model", model, "--input",
                                    str(request_file), "-o", str(tmp_path / "a.png")])
    assert plot.exit_code == 1 and "answers no attention: it has no memory" in plot.output
    assert "Traceback" not in refused.output + plot.output


# -- a real server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(baseline_exports):
    process = ServerProcess(["--model", f"copy-lstm={baseline_exports['dynamic']}",
                             "--model", f"lstm-stateful={baseline_exports['stateful']}",
                             "--model", "copy"])
    yield process
    assert process.stop() == 0


def v2_infer(server, model, x, **body):
    tensor = {"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
              "data": x.ravel().tolist()}
    return httpx.post(f"{server.url}/v2/models/{model}/infer",
                      json={"inputs": [tensor], **body}, timeout=60)


def test_the_server_says_it_serves_a_baseline(server, baseline_exports):
    started = "".join(server.lines)
    assert "model copy-lstm: copy, dynamic, the LSTM baseline, no memory, standard engine" \
        in started
    listing = {m["name"]: m for m in httpx.get(server.url + "/v1/models").json()["models"]}
    assert listing["copy-lstm"]["memory"] is None and listing["copy"]["memory"] == [128, 20]
    cards = httpx.get(server.url + "/page/cards.json").json()["models"]
    assert cards["copy-lstm"]["card"] is None and cards["copy-lstm"]["task"]["name"] == "copy"
    metadata = httpx.get(server.url + "/v2/models/copy-lstm").json()
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities"]
    assert metadata["parameters"]["memory"] is False
    assert metadata["parameters"]["memory_grows"] is False
    v1 = httpx.get(server.url + "/v1/models/copy-lstm/metadata").json()
    assert v1["metadata"]["summary"]["architecture"] == "lstm"


def test_the_task_api_answers_as_onnxruntime_does(server, baseline_exports):
    pairs = requests_of([2, 5, 17], seed=2)
    body = {"instances": [{**r, "return_attention": True} for r, _ in pairs]}
    response = httpx.post(f"{server.url}/v1/models/copy-lstm:predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert_equal_to_direct(baseline_exports["dynamic"], answers, pairs)
    assert all("attention" not in a and "memory_size" not in a for a in answers)
    samples = server.metrics()
    assert metric(samples, "ntm_sequences_total",
                  'memory_size="",model="copy-lstm",within_training_range="false"') == 2


def test_v2_answers_probabilities_alone(server, baseline_exports):
    x = np.concatenate([requests_of([6], seed=s)[0][1][None] for s in (3, 4)])
    response = v2_infer(server, "copy-lstm", x)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert [o["name"] for o in doc["outputs"]] == ["probabilities"]
    assert doc["parameters"] == {"within_training_range": False}  # 13 steps, trained on 3-9
    p = np.asarray(doc["outputs"][0]["data"], np.float32).reshape(doc["outputs"][0]["shape"])
    np.testing.assert_allclose(p, direct(baseline_exports["dynamic"], x), atol=1e-5, rtol=0)
    named = v2_infer(server, "copy-lstm", x, outputs=[{"name": "probabilities"}])
    assert named.status_code == 200


@pytest.mark.parametrize("body, status, message", [
    ({"outputs": [{"name": "attention"}]}, 400,
     "outputs: 'attention' is not an output; outputs: probabilities"),
    ({"extra_input": "memory_size"}, 400,
     "takes the input 'inputs', got ['inputs', 'memory_size'] (the LSTM baseline has no "
     "memory rows)"),
])
def test_v2_bad_requests_name_what_the_baseline_has_not(server, body, status, message):
    x = requests_of([3])[0][1][None]
    tensor = {"name": "inputs", "shape": list(x.shape), "datatype": "FP32",
              "data": x.ravel().tolist()}
    inputs = [tensor]
    if body.pop("extra_input", None):
        inputs.append({"name": "memory_size", "shape": [1], "datatype": "INT32", "data": [64]})
    response = httpx.post(f"{server.url}/v2/models/copy-lstm/infer",
                          json={"inputs": inputs, **body}, timeout=60)
    assert response.status_code == status and message in response.json()["error"]


def test_bad_task_requests_get_the_ntms_errors(server):
    url = f"{server.url}/v1/models/copy-lstm:predict"
    for model in ("copy-lstm", "copy"):
        url = f"{server.url}/v1/models/{model}:predict"
        bad = httpx.post(url, json={"sequence": [[0, 1, 0, 0, 1, 1, 0, 2]]}, timeout=60)
        assert bad.status_code == 400
        assert bad.json() == {"error": "sequence[0][7]: must be 0 or 1, got 2"}
        long = httpx.post(url, json={"sequence": [[0] * 8] * 3000}, timeout=60)
        assert long.status_code == 422 and "at most 4096" in long.json()["error"]


def test_a_stateful_baseline_runs_a_v2_sequence_in_pieces(server, baseline_exports):
    x = np.concatenate([requests_of([10], seed=s)[0][1][None] for s in (5, 6)])  # 21 steps
    whole = direct(baseline_exports["stateful"], x)
    pieces = []
    for i, (a, b) in enumerate([(0, 4), (4, 5), (5, 21)]):
        response = v2_infer(server, "lstm-stateful", x[:, a:b], parameters={
            "sequence_id": 7, "sequence_start": i == 0, "sequence_end": b == 21})
        assert response.status_code == 200, response.text
        doc = response.json()
        assert "memory_size" not in doc["parameters"]
        assert doc["parameters"]["sequence_steps"] == b
        out = doc["outputs"][0]
        pieces.append(np.asarray(out["data"], np.float32).reshape(out["shape"]))
    np.testing.assert_allclose(np.concatenate(pieces, 1), whole, atol=1e-5, rtol=0)
    again = v2_infer(server, "lstm-stateful", x[:, :2], parameters={"sequence_id": 7})
    assert again.status_code == 400 and "sequence_id 7" in again.json()["error"]


def test_grpc_answers_the_probabilities_it_is_asked_for(start_server, baseline_exports):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    pytest.importorskip("grpc")
    from tritonclient.utils import InferenceServerException

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start_server("--grpc-port", str(port), "--model", f"copy-lstm={baseline_exports['dynamic']}")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    x = requests_of([7], seed=8)[0][1][None]
    tensor = grpcclient.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("copy-lstm", [tensor],
                          outputs=[grpcclient.InferRequestedOutput("probabilities")])
    np.testing.assert_allclose(result.as_numpy("probabilities"),
                               direct(baseline_exports["dynamic"], x), atol=1e-5, rtol=0)
    assert "memory_size" not in result.get_response(as_json=True)["parameters"]
    metadata = client.get_model_metadata("copy-lstm", as_json=True)
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities"]
    with pytest.raises(InferenceServerException, match="has no 'attention' output"):
        client.infer("copy-lstm", [tensor],
                     outputs=[grpcclient.InferRequestedOutput("attention")])
    unnamed = client.infer("copy-lstm", [tensor])  # no output named: the model's own
    assert [o["name"] for o in unnamed.get_response(as_json=True)["outputs"]] == ["probabilities"]
