"""``python -m ntm.export.recover``: a run directory rebuilt from a bundled ONNX file."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_recover_rebuilds_the_bundled_copy_model(tmp_path):
    # The bundled models take memory_size (their initial weighting is stored as logits, padded
    # per call): recovery must find it in that form, and the rebuilt run must answer alike.
    out = tmp_path / "copy"
    run = subprocess.run([sys.executable, "-m", "ntm.export.recover",
                          str(REPO / "ntm" / "pretrained" / "copy.onnx"), str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "matches it within" in run.stdout
    from ntm.training.runs import Run

    rebuilt = Run.load(out)
    assert rebuilt.train_config.task == "copy" and rebuilt.model_config.memory_size == 128
    [row] = rebuilt.evaluate(rebuilt.task.default_eval_points()[1:2], sequences=8)
    assert row.mean_bits == 0.0  # length 20, inside the training range: the model still copies
