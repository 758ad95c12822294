"""The LSTM baseline's Triton entries (``ntm export --format triton`` of a baseline run) on the
real Triton: READY under ``--strict-model-config``, and their answers, over HTTP and gRPC, equal
onnxruntime's on the baseline's ONNX export; dynamic length, stateful and fixed length."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.triton.conftest import BASELINE_MODELS
from tests.triton.test_triton_server import copy_inputs, infer, run_in_chunks

http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")


@pytest.fixture(scope="module")
def onnxruntime_answer(baseline_run, tmp_path_factory):
    """x [batch, time, 9] -> probabilities of the baseline's ONNX export, run directly."""
    from ntm.export.exporter import export_run

    path = export_run(baseline_run, "onnx", out=tmp_path_factory.mktemp("lstm") / "m.onnx").path
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probabilities"], {"inputs": x})[0]


def test_the_baseline_models_are_ready(triton, clients):
    states = {m["name"]: (m.get("state"), m.get("reason")) for m in triton.index}
    for name in BASELINE_MODELS:
        assert states[name][0] == "READY", states[name]
    for client, _ in clients.values():
        assert all(client.is_model_ready(name) for name in BASELINE_MODELS)
    metadata = clients["http"][0].get_model_metadata("copy_lstm")
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities"]
    assert [i["name"] for i in metadata["inputs"]] == ["inputs"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["copy_lstm", "copy_lstm_stateful"])
def test_answers_equal_onnxruntime(clients, onnxruntime_answer, protocol, model):
    client, module = clients[protocol]
    for i, length in enumerate((1, 4, 30)):  # trained on 1 to 4
        x = copy_inputs(length, 200 + i)
        sequence = {"sequence_id": 300 + i, "sequence_start": True, "sequence_end": True} \
            if model == "copy_lstm_stateful" else {}
        np.testing.assert_allclose(infer(client, module, model, x, **sequence),
                                   onnxruntime_answer(x), atol=1e-5, rtol=0)


def test_a_sequence_in_three_chunks_equals_one_shot(clients, onnxruntime_answer):
    client, module = clients["grpc"]
    x = copy_inputs(20, 7)
    pieces = run_in_chunks(client, module, "copy_lstm_stateful", x, 311, [0, 12, 30, 41])
    np.testing.assert_allclose(pieces, onnxruntime_answer(x), atol=1e-5, rtol=0)


def test_the_fixed_length_model_answers(clients, onnxruntime_answer):
    client, module = clients["http"]
    x = copy_inputs(4, 8)  # 9 steps: the model's length
    np.testing.assert_allclose(infer(client, module, "copy_lstm_fixed9", x),
                               onnxruntime_answer(x), atol=1e-5, rtol=0)
