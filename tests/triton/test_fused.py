"""``ntm export --format triton --kernel fused`` on the real Triton: the onnxruntime backend
registers the library named in ``model_operations``, and the fused entries answer as the
standard ones."""

from __future__ import annotations

import numpy as np
import pytest

from tests.triton.test_triton_server import copy_inputs, infer, run_in_chunks

http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")

FUSED = ("copy_fused", "copy_fused_stateful")

pytestmark = pytest.mark.usefixtures("kernel_library")  # the fused entries need it built


def test_the_fused_models_are_ready(triton, clients):
    states = {m["name"]: (m.get("state"), m.get("reason")) for m in triton.index}
    for name in FUSED:
        assert states[name][0] == "READY", states[name]
    assert all(clients["grpc"][0].is_model_ready(name) for name in FUSED)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("length", [5, 20, 60, 500])
def test_fused_answers_equal_the_standard_model(clients, protocol, length):
    client, module = clients[protocol]
    x = copy_inputs(length, 40 + length)
    fused = infer(client, module, "copy_fused", x)
    standard = infer(client, module, "copy", x)
    np.testing.assert_allclose(fused, standard, atol=1e-5, rtol=0)
    assert ((fused[0, length + 1:] > 0.5) == (x[0, :length, :8] > 0.5)).all()


def test_a_fused_sequence_in_three_chunks_equals_one_shot(clients):
    client, module = clients["grpc"]
    x = copy_inputs(20, 6)
    pieces = run_in_chunks(client, module, "copy_fused_stateful", x, 91, [0, 12, 30, 41])
    np.testing.assert_allclose(pieces, infer(client, module, "copy", x), atol=1e-5, rtol=0)
