"""A tiny trained run, made once per session, to export in every test."""

import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

from ntm.training.config import TrainConfig
from ntm.training.runs import Run  # noqa: E402
from ntm.training.trainer import Trainer  # noqa: E402

TINY = dict(memory_size=16, memory_width=6, controller_size=16, num_read_heads=2,
            num_write_heads=1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A copy run (lengths 1-4, memory 16 so long inputs wrap the circular shift many times)."""
    run_dir = tmp_path_factory.mktemp("run") / "copy"
    tc = TrainConfig(task="copy", max_length=4, batch_size=4, steps=30, eval_every=10,
                     eval_size=8, checkpoint_every=10, log_every=10, target_error=-1)
    Trainer(Run.create(run_dir, tc, **TINY)).run()
    return run_dir


@pytest.fixture(scope="session")
def dynamic_onnx(tiny_run, tmp_path_factory):
    from ntm.export.exporter import export_run

    return export_run(tiny_run, "onnx", out=tmp_path_factory.mktemp("onnx") / "copy.onnx")
