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


@pytest.mark.slow
def test_recover_finds_a_learned_initial_memory(tmp_path):
    """A small model: a folded constant as wide as its output shares the output bias's shape,
    and the learned initial memory is one more weight to find."""
    import numpy as np

    from ntm.export.exporter import export_run
    from ntm.export.recover import recover
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    config = TrainConfig(task="copy", batch_size=4, steps=10, eval_every=10, eval_size=4,
                         checkpoint_every=10, log_every=10, target_error=-1, max_length=4)
    Trainer(Run.create(tmp_path / "run", config, memory_size=16, memory_width=6,
                       controller_size=24, initial_memory="learned")).run()
    exported = export_run(tmp_path / "run", "onnx", out=tmp_path / "model.onnx")
    assert recover(exported.path, tmp_path / "recovered") <= 1e-6
    original, rebuilt = Run.load(tmp_path / "run"), Run.load(tmp_path / "recovered")
    assert rebuilt.model_config.initial_memory == "learned"
    assert np.array_equal(rebuilt.model.cell.initial_memory.numpy(),
                          original.model.cell.initial_memory.numpy())
