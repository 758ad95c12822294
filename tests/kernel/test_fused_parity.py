"""The fused kernel against the standard ONNX model (itself proven equal to TensorFlow at
export): the bundled models and their fused twins, same inputs, same memory rows."""

from __future__ import annotations

import numpy as np
import pytest

from tests.kernel.conftest import task_inputs

RUN = ["probabilities", "attention"]
PROBABILITY_TOLERANCE = 1e-5
ATTENTION_TOLERANCE = 1e-4


def feeds(x: np.ndarray, rows: int) -> dict:
    return {"inputs": x, "memory_size": np.array([rows], np.int32)}


@pytest.mark.parametrize("task,length,batch,rows", [
    ("copy", 1, 1, 128), ("copy", 20, 1, 128), ("copy", 20, 9, 128), ("copy", 120, 3, 256),
    ("copy", 300, 1, 512), ("recall", 2, 1, 128), ("recall", 6, 17, 128),
    ("recall", 12, 2, 256), ("repeat-copy", 5, 4, 128), ("repeat-copy", 10, 1, 256),
])
def test_the_fused_model_answers_as_the_standard_one(engines, task, length, batch, rows):
    standard, fused = engines[task]
    x = task_inputs(task, length, batch, seed=length * 31 + batch)
    p_std, a_std = standard.run(RUN, feeds(x, rows))
    p_fused, a_fused = fused.run(RUN, feeds(x, rows))
    assert p_fused.shape == p_std.shape and a_fused.shape == a_std.shape
    assert np.abs(p_fused - p_std).max() <= PROBABILITY_TOLERANCE
    assert np.abs(a_fused - a_std).max() <= ATTENTION_TOLERANCE


def test_a_batch_answers_as_its_sequences_one_by_one(engines):
    _, fused = engines["copy"]
    x = task_inputs("copy", 20, 12, seed=3)
    together = fused.run(RUN, feeds(x, 128))[0]
    alone = np.concatenate([fused.run(RUN, feeds(x[i:i + 1], 128))[0] for i in range(12)])
    assert np.abs(together - alone).max() <= 1e-6


def test_a_sequence_in_three_chunks_equals_one_shot(engines):
    standard, fused = engines["copy"]
    x = task_inputs("copy", 30, 2, seed=5)  # 61 steps
    whole = standard.run(RUN, feeds(x, 128))[0]
    state = np.zeros([1, 0], np.float32)
    pieces = []
    for i, (a, b) in enumerate([(0, 17), (17, 40), (40, 61)]):
        p, _, state = fused.run(RUN + ["state_out"], {
            **feeds(x[:, a:b], 128), "sequence_start": np.array([int(i == 0)], np.int32),
            "state": state})
        pieces.append(p)
    assert np.abs(np.concatenate(pieces, axis=1) - whole).max() <= PROBABILITY_TOLERANCE


def test_the_state_layout_is_the_standard_models(engines):
    """A state the fused model returns continues on the standard model, and back."""
    standard, fused = engines["copy"]
    x = task_inputs("copy", 10, 1, seed=8)
    start = {"sequence_start": np.array([1], np.int32), "state": np.zeros([1, 0], np.float32)}
    go_on = {"sequence_start": np.array([0], np.int32)}
    outs = ["probabilities", "state_out"]
    _, s_fused = fused.run(outs, {**feeds(x[:, :10], 128), **start})
    _, s_std = standard.run(outs, {**feeds(x[:, :10], 128), **start})
    assert np.abs(s_fused - s_std).max() <= 1e-4
    p_cross = standard.run(outs, {**feeds(x[:, 10:], 128), **go_on, "state": s_fused})[0]
    p_std = standard.run(outs, {**feeds(x[:, 10:], 128), **go_on, "state": s_std})[0]
    assert np.abs(p_cross - p_std).max() <= PROBABILITY_TOLERANCE


def test_the_model_chooses_its_rows_when_asked_for_none(engines):
    """memory_size 0: the bucket rule of the export (copy of 200 needs 256 rows)."""
    _, fused = engines["copy"]
    x = task_inputs("copy", 200, 1, seed=2)
    p0, a0 = fused.run(RUN, feeds(x, 0))
    p256, a256 = fused.run(RUN, feeds(x, 256))
    assert a0.shape[-1] == 256
    assert np.array_equal(p0, p256)
