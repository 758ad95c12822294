"""Each benchmark runs end to end in its small mode, so it cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_train_convergence_small(tmp_path):
    pytest.importorskip("tensorflow")
    run = subprocess.run([sys.executable, "benchmarks/train_convergence.py", "--small", "--out",
                          str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "train_convergence_small.json").read_text())
    assert result["stopped"]["step"] == 20
    assert [row["length"] for row in result["evaluate"]] == [5, 10, 20]
    assert (tmp_path / "train_convergence_small.md").read_text().startswith("# Training")
