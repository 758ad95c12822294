"""benchmarks/copy_rare_failures.py: its NumPy copy of the model is the model, its at-risk
sequences are still copies, and its small mode runs end to end."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import copy_rare_failures as crf  # noqa: E402

PRETRAINED = REPO / "ntm" / "pretrained"


@pytest.fixture(scope="module")
def standard_copy():
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import RuntimeOptions

    return ModelRuntime(PRETRAINED / "copy.onnx", options=RuntimeOptions(engine="standard"))


@pytest.mark.parametrize("length, rows", [(6, 128), (9, 256)])
def test_the_numpy_copy_computes_what_the_model_computes(standard_copy, length, rows):
    weights, attributes = crf.read_fused(PRETRAINED / "copy.fused.onnx")
    x, _, _ = next(crf.fresh(standard_copy.task, length, 3, seed=5))
    probabilities, attention = standard_copy.run_checked(x, rows)
    trace = crf.replay(weights, attributes, x.astype(np.float64), rows, record=(2,))
    np.testing.assert_allclose(trace["weights"], attention, atol=1e-4)
    np.testing.assert_allclose(trace["probabilities"], probabilities, atol=1e-4)
    assert trace["memory_at"][2].shape == (3, rows, attributes["memory_width"])
    assert trace["similarity"].shape == (3, 2 * length + 1, rows)


def test_at_risk_sequences_are_copies_of_their_new_first_vectors(standard_copy):
    task = standard_copy.task
    x, y, _ = next(crf.fresh(task, 5, 2, seed=1))
    pairs = np.array([[0b01011100, 0b10010100], [255, 1]])
    xr, yr = crf.with_first_pairs(task, x, y, pairs, 5)
    assert xr[0, 0, :8].tolist() == [0, 1, 0, 1, 1, 1, 0, 0]
    assert xr[1, 1, :8].tolist() == [0] * 7 + [1]
    np.testing.assert_array_equal(yr[:, 6:11], xr[:, :5, :8])  # the copy of what came in
    np.testing.assert_array_equal(xr[:, 2:], x[:, 2:])
    assert crf.bit_rows(np.array([5]), 4).tolist() == [[0, 1, 0, 1]]


def test_rows_of_each_rule():
    assert crf.rows_of("chosen", 256, 200) == 256
    assert crf.rows_of("tight", 256, 200) == 202 and crf.rows_of("tight", 128, 20) == 128
    assert crf.rows_of("double", 256, 200) == 512
    assert crf.rows_of("trained", 256, 127) == 128
    assert crf.rows_of("trained", 256, 200) is None and crf.rows_of("trained", 128, 20) is None


def test_small_run(tmp_path, kernel_library):
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / "copy_rare_failures.py"),
                          "--small", "--out", str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "copy_rare_failures_small.json").read_text())
    table = (tmp_path / "copy_rare_failures_small.md").read_text()
    assert [p["length"] for p in result["points"]] == [20, 30]
    assert all(p["standard_same_verdicts"] for p in result["points"])
    assert result["engine"] == "fused" and result["target_row"] >= 0
    assert all(d["reference_max_diff"] < 1e-4 for d in result["diagnosis"])
    assert result["pairs"]["pairs"] == 512
    rules = {(r["length"], r["rule"]) for r in result["rules_at_risk"]}
    assert (20, "strength power 4") in rules and (20, "trained rows (128)") not in rules
    assert {r["rule"] for r in result["rules_fresh"]} == set(crf.CHECKED_RULES)
    for heading in ("## Failures", "## The read head", "## Which inputs", "## Rules"):
        assert heading in table
