"""Each benchmark runs end to end in its small mode, so it cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_small(name: str, out: Path) -> tuple[dict, str]:
    """Run benchmarks/NAME.py --small into ``out``; -> (its JSON, its Markdown)."""
    run = subprocess.run([sys.executable, f"benchmarks/{name}.py", "--small", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return (json.loads((out / f"{name}_small.json").read_text()),
            (out / f"{name}_small.md").read_text())


def test_train_convergence_small(tmp_path):
    pytest.importorskip("tensorflow")
    result, table = run_small("train_convergence", tmp_path)
    assert result["stopped"]["step"] == 20 and result["sequences_per_s"] > 0
    assert [row["length"] for row in result["evaluate"]] == [5, 10, 20]
    assert table.startswith("# Training")


def test_inference_small(tmp_path):
    pytest.importorskip("tensorflow")
    result, table = run_small("inference", tmp_path)
    engines = {(r["engine"], r["length"], r["batch"]) for r in result["rows"]}
    assert engines == {(e, n, b) for e in ("savedmodel", "onnx-dynamic", "onnx-fixed")
                       for n in (2, 4) for b in (1, 4)}
    for row in result["rows"]:
        assert row["median_ms"] > 0 and row["sequences_per_s"] > 0
        assert 0 < row["fraction_of_matmul"] < 1
    assert result["matmul_gflops"] > 0
    assert table.startswith("# Inference")


def test_serving_small(tmp_path):
    result, table = run_small("serving", tmp_path)
    for mode in ("batching", "no_batching"):
        server = result["server"][mode]
        assert server["errors"] == 0, server["error_kinds"]
        assert server["requests_per_s"] > 0 and server["p99_ms"] >= server["p50_ms"] > 0
        assert server["exit_code"] == 0
    assert result["in_process"]["one_at_a_time_per_s"] > 0
    assert table.startswith("# Serving")


def test_soak_small(tmp_path):
    result, table = run_small("soak", tmp_path)
    assert result["errors"] == 0, result["error_kinds"]
    assert result["requests"] == 400 and result["server_exit_code"] == 0
    assert result["rss_growth_mb"] < 50  # a leak of ~0.1 MB per request would show
    assert result["p99_ms"] >= result["p50_ms"] > 0 and table.startswith("# Soak")
