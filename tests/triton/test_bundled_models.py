"""Every bundled model, not only copy, exported with ``ntm export --format triton`` and run by a
real Triton 2.51 (HTTP and gRPC, standard and fused): its answers to the task's example
requests equal what ``ntm.load`` computes in-process."""

from __future__ import annotations

import numpy as np
import pytest

import ntm

from ntm.contract.tasks import Difficulty
from ntm.serving.models import bundled_models
from tests.triton.conftest import triton_name
from tests.triton.test_triton_server import infer

http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")

OTHERS = sorted(name for name in bundled_models() if name != "copy")


def examples(task, count: int = 3) -> np.ndarray:
    """Inputs [count, time, in] of the task's example requests at the top of its training
    range (one difficulty: one batch, no padding)."""
    rng = np.random.default_rng(5)
    point = task.hardest_training_difficulty
    requests = [task.request_example(rng, Difficulty(point.length, point.repeats))[0]
                for _ in range(count)]
    return np.stack([task.encode(r).inputs for r in requests]).astype(np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", OTHERS)
def test_each_bundled_model_answers_on_triton_as_in_process(triton, name, protocol):
    module = {"http": http, "grpc": grpc}[protocol]
    client = module.InferenceServerClient(triton.http if protocol == "http" else triton.grpc)
    model = ntm.load(name)
    x = examples(model.runtime.task)
    expected, _ = model.runtime.run(x)
    entries = [triton_name(name)]
    if client.is_model_ready(triton_name(name) + "_fused"):
        entries.append(triton_name(name) + "_fused")
    for entry in entries:
        assert client.is_model_ready(entry), entry
        got = infer(client, module, entry, x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=entry)
