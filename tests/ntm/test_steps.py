"""The training step's loss terms against NumPy references."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.config import ModelConfig  # noqa: E402
from ntm.model import NTM  # noqa: E402
from ntm.steps import loss_and_gradients, masked_loss, write_entropy  # noqa: E402


def test_write_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 2, 7)).astype(np.float32)  # 1 read + 1 write head
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = -(w[:, :, 1:] * np.log(w[:, :, 1:] + 1e-12)).sum(axis=(1, 2, 3)).mean()
    assert abs(float(write_entropy(tf.constant(w), 1)) - expected) < 1e-4
    uniform = np.full((2, 4, 2, 16), 1 / 16, np.float32)
    assert abs(float(write_entropy(tf.constant(uniform), 1)) - 4 * np.log(16)) < 1e-4
    one_hot = np.zeros((2, 4, 2, 16), np.float32)
    one_hot[..., 3] = 1.0
    assert abs(float(write_entropy(tf.constant(one_hot), 1))) < 1e-6


def test_the_entropy_term_adds_to_the_loss_and_its_gradient():
    config = ModelConfig(input_size=5, output_size=4, memory_size=8, memory_width=4,
                         controller_size=8)
    model = NTM(config, seed=1)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.integers(0, 2, (2, 6, 5)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, (2, 6, 4)).astype(np.float32))
    mask = tf.ones([2, 6])
    variables = model.trainable_variables
    plain, _, g_plain = loss_and_gradients(model, variables, x, y, mask)
    weighted, _, g_weighted = loss_and_gradients(model, variables, x, y, mask, 0.5)
    out = model(x)
    expected = masked_loss(out.logits, y, mask) + 0.5 * write_entropy(out.weights, 1)
    assert abs(float(weighted) - float(expected)) < 1e-4 and float(weighted) > float(plain)
    kernel = [v.name for v in variables].index(model.cell.head_kernel.name)
    assert not np.allclose(g_plain[kernel].numpy(), g_weighted[kernel].numpy())


def test_a_polishing_run_switches_the_term_on_at_the_target_and_trains_on(tmp_path):
    from ntm.config import TrainConfig
    from ntm.runs import Run
    from ntm.trainer import Trainer

    tc = TrainConfig(task="copy", max_length=3, batch_size=2, steps=200, eval_every=10,
                     eval_size=4, checkpoint_every=10, log_every=10, target_error=1000,
                     patience_evals=1, write_entropy=0.5, polish_steps=25)
    run = Run.create(tmp_path / "run", tc, memory_size=8, memory_width=4, controller_size=8)
    trainer = Trainer(run)
    assert float(trainer.polish.entropy_weight.numpy()) == 0.0
    result = trainer.run()
    # reached at the first evaluation (step 10), polished 25 steps, stopped at the next
    # evaluation that found the target again (step 40)
    assert int(trainer.polish.since.numpy()) == 10 and result.step == 40
    assert float(trainer.polish.entropy_weight.numpy()) == 0.5
    resumed = Trainer(Run.load(tmp_path / "run"), resume=True)
    assert int(resumed.polish.since.numpy()) == 10


def test_configs_without_the_new_fields_run_as_before():
    from ntm.config import TrainConfig

    old = TrainConfig.from_dict({"task": "copy"})
    assert old.write_entropy == 0 and old.polish_steps == 0 and not old.polishes
    assert TrainConfig(task="copy", write_entropy=0.01, polish_steps=10).polishes


def test_resume_switches_polishing_on_and_says_what_starts_afresh(tmp_path):
    import io

    from ntm.config import TrainConfig
    from ntm.runs import Run
    from ntm.trainer import Trainer

    tc = TrainConfig(task="copy", max_length=3, batch_size=2, steps=20, eval_every=10,
                     eval_size=4, checkpoint_every=10, log_every=10, target_error=-1,
                     write_entropy=0.0)  # unpolished, as copy runs were before it polished
    Trainer(Run.create(tmp_path / "run", tc, memory_size=8, memory_width=4,
                       controller_size=8)).run()
    run = Run.load(tmp_path / "run").resumed({"steps": 30, "write_entropy": 0.1,
                                              "polish_steps": 5, "target_error": 1000.0})
    out = io.StringIO()
    trainer = Trainer(run, resume=True, stream=out)
    assert "starts afresh" in trainer.resume_note
    trainer.run()
    assert int(trainer.polish.since.numpy()) == 30  # reached at step 30, the last one
    assert "starts afresh" in out.getvalue()
