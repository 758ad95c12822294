"""``ntm export --kernel fused`` on architectures the bundled models do not have (feed-forward
controller, several read and write heads, wider shifts, other tasks' widths, a learned initial
memory): the export's own proof against TensorFlow passes, and the fused model answers as the
standard export does."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from ntm.kernel.reference import forward, read_fused_model
from tests.kernel.conftest import session, task_inputs

tf = pytest.importorskip("tensorflow")

ARCHITECTURES = {
    "feedforward-3r2w-shift2": ("copy", dict(memory_size=16, memory_width=6, controller_size=24,
                                            controller="feedforward", num_read_heads=3,
                                            num_write_heads=2, shift_range=2)),
    "lstm-priority-sort": ("priority-sort", dict(memory_size=32, memory_width=8,
                                                 controller_size=16)),
    "learned-memory": ("copy", dict(memory_size=16, memory_width=6, controller_size=24,
                                    num_read_heads=2, initial_memory="learned")),
}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def exported(request, tmp_path_factory, kernel_library):
    from ntm.export.exporter import export_run
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    task, model = ARCHITECTURES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    config = TrainConfig(task=task, batch_size=4, steps=20, eval_every=10, eval_size=4,
                         checkpoint_every=10, log_every=10, target_error=-1,
                         **({"max_length": 4} if task == "copy" else {}))
    Trainer(Run.create(root / "run", config, **model)).run()
    out = {}
    for kernel in ("standard", "fused"):
        result = export_run(root / "run", "onnx", out=root / f"{kernel}.onnx", stateful=True,
                            kernel=kernel)
        assert all(c.passed for c in result.comparisons)
        out[kernel] = session(result.path, kernel == "fused")
    return task, out, root / "fused.onnx"


def test_fused_answers_as_standard_on_other_architectures(exported):
    task, engines, path = exported
    reference = read_fused_model(path)
    lengths = (1, 3, 9) if task == "copy" else (5, 20, 30)
    for length in lengths:
        x = task_inputs(task, length, 5, seed=length)
        for rows in (32, 64):
            feeds = {"inputs": x, "memory_size": np.array([rows], np.int32),
                     "sequence_start": np.array([1], np.int32),
                     "state": np.zeros([1, 0], np.float32)}
            names = ["probabilities", "attention", "state_out"]
            p_s, a_s, s_s = engines["standard"].run(names, feeds)
            p_f, a_f, s_f = engines["fused"].run(names, feeds)
            assert np.abs(p_f - p_s).max() <= 1e-5
            assert np.abs(a_f - a_s).max() <= 1e-4
            assert s_f.shape == s_s.shape and np.abs(s_f - s_s).max() <= 1e-4
            p_r, a_r = forward(reference, x, rows)  # several write heads, shift 2, no LSTM
            assert np.abs(p_f - p_r).max() <= 1e-5 and np.abs(a_f - a_r).max() <= 1e-4


def test_the_cli_refuses_what_a_fused_export_cannot_be(tmp_path, kernel_library):
    from ntm.cli.main import cli

    run = tmp_path / "nothing"
    for args, words in ((["--format", "savedmodel"], "--kernel fused is an ONNX model"),
                        (["--length", "41"], "--kernel fused exports have a dynamic length")):
        result = CliRunner().invoke(cli, ["export", str(run), "--kernel", "fused", *args])
        assert result.exit_code == 2 and words in result.output, result.output
