"""A command whose optional extra is missing says which one to install, in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def without_tensorflow(tmp_path):
    """PYTHONPATH under which ``import tensorflow`` fails as it does when it is not installed."""
    package = tmp_path / "blocked" / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow')\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path / "blocked")}


@pytest.mark.parametrize("args", [["train", "--task", "copy", "--steps", "1", "--out", "r"],
                                  ["evaluate", "r"], ["export", "r"]])
def test_train_evaluate_and_export_name_the_train_extra(without_tensorflow, tmp_path, args):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    run = subprocess.run([sys.executable, "-m", "ntm.cli.main", *args], cwd=tmp_path,
                         capture_output=True, text=True, env=without_tensorflow, timeout=120)
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[train]'" in lines[0], run.stderr
    assert "Traceback" not in run.stderr
