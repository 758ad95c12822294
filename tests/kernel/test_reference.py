"""The float64 reference (``ntm.kernel.reference``) computes the model both engines compute:
each float32 engine lies within float32 rounding of it, on every bundled model, with grown
memory, and on architectures the bundled models do not have."""

from __future__ import annotations

import numpy as np
import pytest

from ntm.kernel.reference import forward, read_fused_model
from ntm.serving.models import bundled_models, fused_twin
from tests.kernel.conftest import TASKS, task_inputs

RUN = ["probabilities", "attention"]
CASES = {"copy": [(20, 8, 128), (20, 2, 256)], "recall": [(6, 8, 128), (12, 2, 256)],
         "repeat-copy": [(5, 8, 128), (8, 2, 256)]}


@pytest.mark.parametrize("task", TASKS)
def test_both_engines_sit_on_the_float64_reference(engines, task):
    model = read_fused_model(fused_twin(bundled_models()[task]))
    standard, fused = engines[task]
    for length, batch, rows in CASES[task]:
        x = task_inputs(task, length, batch, seed=length + rows)
        feeds = {"inputs": x, "memory_size": np.array([rows], np.int32)}
        p_r, a_r = forward(model, x, rows)
        for engine in (standard, fused):
            p, a = engine.run(RUN, feeds)
            assert p.shape == p_r.shape and a.shape == a_r.shape
            assert np.abs(p - p_r).max() <= 1e-5
            assert np.abs(a - a_r).max() <= 1e-4


def test_a_wrong_equation_is_caught(engines):
    """The comparison above can fail: a reference whose sharpening reads its input one row
    off lands far from the engines."""
    import ntm.kernel.reference as reference

    model = read_fused_model(fused_twin(bundled_models()["copy"]))
    x = task_inputs("copy", 20, 2, seed=3)
    _, a = engines["copy"][1].run(RUN, {"inputs": x, "memory_size": np.array([128], np.int32)})
    original = reference.sharpen
    try:
        reference.sharpen = lambda w, gamma: original(np.roll(w, 1, axis=-1), gamma)
        _, a_wrong = forward(model, x, 128)
    finally:
        reference.sharpen = original
    assert np.abs(a - a_wrong).max() > 0.1


def test_read_fused_model_refuses_a_standard_model(tmp_path):
    with pytest.raises(ValueError, match="not a fused NTM model"):
        read_fused_model(bundled_models()["copy"])
