"""A model with a learned initial memory on the real Triton (``copy_learned``, and its fused
twin ``copy_learned_fused`` when the kernel is built): READY, and its answers over HTTP and gRPC
equal onnxruntime's on the run's standard ONNX export, inside the trained rows and past them
(length 30 needs 32 of the model's 16 rows: the added ones start at memory_init)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.triton.test_triton_server import copy_inputs, infer

http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")


@pytest.fixture(scope="module")
def models(triton):
    from ntm.contract.kernel_library import find_library

    return ["copy_learned"] + (["copy_learned_fused"] if find_library() else [])


@pytest.fixture(scope="module")
def onnxruntime_answer(learned_memory_run, tmp_path_factory):
    """x [1, time, 9] -> probabilities of the run's standard ONNX export, which chooses its
    memory rows as Triton's entry does (memory_size 0)."""
    from ntm.export.exporter import export_run

    out = tmp_path_factory.mktemp("learned") / "m.onnx"
    session = ort.InferenceSession(str(export_run(learned_memory_run, "onnx", out=out).path),
                                   providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probabilities"], {
        "inputs": x, "memory_size": np.array([0], np.int32)})[0]


def test_the_models_are_ready(triton, models):
    states = {m["name"]: (m.get("state"), m.get("reason")) for m in triton.index}
    for name in models:
        assert states[name][0] == "READY", states[name]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_answers_equal_onnxruntime(clients, models, onnxruntime_answer, protocol):
    client, module = clients[protocol]
    for name in models:
        for i, length in enumerate((1, 4, 30)):  # trained on 1 to 4; 30 grows the memory
            x = copy_inputs(length, 400 + i)
            np.testing.assert_allclose(infer(client, module, name, x), onnxruntime_answer(x),
                                       atol=1e-5, rtol=0, err_msg=f"{name} at length {length}")


def test_the_learned_rows_are_what_the_model_starts_from(learned_memory_run,
                                                          onnxruntime_answer):
    """The comparison above can fail: the same weights from a constant memory answer otherwise
    by far more than its tolerance."""
    import tensorflow as tf

    from ntm.training.runs import Run

    model = Run.load(learned_memory_run).model
    x = copy_inputs(4, 401)
    learned = tf.sigmoid(model(tf.constant(x)).logits).numpy()
    np.testing.assert_allclose(learned, onnxruntime_answer(x), atol=1e-5, rtol=0)
    model.cell.initial_memory.assign(tf.fill(model.cell.initial_memory.shape, 1e-6))
    constant = tf.sigmoid(model(tf.constant(x)).logits).numpy()
    assert np.abs(constant - learned).max() > 1e-3
