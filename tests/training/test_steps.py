"""The training step's loss terms against NumPy references."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.model.config import ModelConfig
from ntm.model.machine import NTM  # noqa: E402
from ntm.training.steps import (loss_and_gradients, masked_loss, noisy_initial_state,  # noqa: E402
                       write_entropy)


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


def test_memory_noise_is_added_to_the_initial_memory_and_zero_noise_changes_nothing():
    config = ModelConfig(input_size=5, output_size=4, memory_size=8, memory_width=4,
                         controller_size=8, memory_init=1e-6)
    model = NTM(config, seed=1)
    rng = np.random.default_rng(2)
    x = tf.constant(rng.integers(0, 2, (2, 6, 5)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, (2, 6, 4)).astype(np.float32))
    mask = tf.ones([2, 6])
    noise = rng.normal(0, 0.5, (2, 8, 4)).astype(np.float32)
    state = noisy_initial_state(model, tf.constant(noise))
    np.testing.assert_allclose(state.memory.numpy(), 1e-6 + noise, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(state.weights.numpy(),
                                  model.cell.initial_state(2).weights.numpy())
    variables = model.trainable_variables
    plain, _, g_plain = loss_and_gradients(model, variables, x, y, mask)
    zero, _, g_zero = loss_and_gradients(model, variables, x, y, mask, 0.0, tf.zeros([2, 8, 4]))
    assert float(zero) == float(plain)
    for a, b in zip(g_plain, g_zero, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    noisy, _, _ = loss_and_gradients(model, variables, x, y, mask, 0.0, tf.constant(noise))
    expected = masked_loss(model.run_dynamic(x, initial=state).logits, y, mask)
    assert abs(float(noisy) - float(expected)) < 1e-5 and abs(float(noisy) - float(plain)) > 1e-4


def test_controller_noise_is_added_to_the_cell_state_after_every_step():
    config = ModelConfig(input_size=5, output_size=4, memory_size=8, memory_width=4,
                         controller_size=8)
    model = NTM(config, seed=1)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, (2, 6, 5)).astype(np.float32)
    noise = rng.normal(0, 0.3, (2, 6, 8)).astype(np.float32)
    # reference: the cell stepped by hand, the noise added to c between the steps
    state, rows, logits = model.cell.initial_state(2), model.cell.memory_rows(), []
    for t in range(6):
        out, state = model.cell.step(tf.constant(x[:, t]), state, rows)
        h, c = state.controller
        state = state._replace(controller=(h, c + noise[:, t]))
        logits.append(model.cell.output_logits(out[:, None], state.reads[:, None])[:, 0])
    got = model.run_dynamic(tf.constant(x), controller_noise=tf.constant(noise))
    np.testing.assert_allclose(got.logits.numpy(), tf.stack(logits, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(got.state.controller[1].numpy(), state.controller[1].numpy(),
                               atol=1e-5)
    plain = model.run_dynamic(tf.constant(x)).logits.numpy()
    zero = model.run_dynamic(tf.constant(x), controller_noise=tf.zeros([2, 6, 8])).logits.numpy()
    np.testing.assert_array_equal(zero, plain)  # zeros change nothing
    assert np.abs(got.logits.numpy() - plain).max() > 1e-3
    assert np.abs(got.logits.numpy()[:, 0] - plain[:, 0]).max() == 0  # step 0's out precedes it


def test_the_training_loss_sees_the_controller_noise_and_a_feedforward_one_ignores_it():
    rng = np.random.default_rng(4)
    x = tf.constant(rng.integers(0, 2, (2, 6, 5)).astype(np.float32))
    y = tf.constant(rng.integers(0, 2, (2, 6, 4)).astype(np.float32))
    mask = tf.ones([2, 6])
    noise = tf.constant(rng.normal(0, 0.5, (2, 6, 8)).astype(np.float32))
    for controller, changes in (("lstm", True), ("feedforward", False)):
        model = NTM(ModelConfig(input_size=5, output_size=4, memory_size=8, memory_width=4,
                                controller_size=8, controller=controller), seed=1)
        variables = model.trainable_variables
        plain, _, _ = loss_and_gradients(model, variables, x, y, mask)
        noisy, _, _ = loss_and_gradients(model, variables, x, y, mask, 0.0, None, noise)
        expected = (masked_loss(model.run_dynamic(x, controller_noise=noise).logits, y, mask)
                    if changes else plain)
        assert abs(float(noisy) - float(expected)) < 1e-5
        assert (abs(float(noisy) - float(plain)) > 1e-4) == changes


def _noise_trainer(tmp_path, **changes):
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    settings = dict(task="copy", max_length=3, batch_size=3, steps=200, eval_every=10,
                    eval_size=4, checkpoint_every=10, log_every=10, target_error=1000,
                    patience_evals=1, write_entropy=0.0, memory_noise=0.5, polish_steps=25,
                    blank_runs=0.0)
    tc = TrainConfig(**{**settings, **changes})
    return Trainer(Run.create(tmp_path / "run", tc, memory_size=16, memory_width=8,
                              controller_size=8))


def test_memory_noise_waits_for_its_polish_steps_and_is_drawn_from_seed_and_step(tmp_path):
    trainer = _noise_trainer(tmp_path)  # 25 polish steps: noise after 12 of them (half)
    assert trainer.config.polishes and trainer.config.noise_after == 12
    # no target yet
    assert not trainer.schedule.noise_on(5) and not trainer.schedule.memory_noise_for(5, 3).any()
    trainer.schedule.polish.since.assign(10)  # the target reached at step 10
    # polish steps 11-22 plain
    assert not trainer.schedule.noise_on(22) and trainer.schedule.noise_on(23)
    assert not trainer.schedule.memory_noise_for(22, 3).any()
    noise = trainer.schedule.memory_noise_for(30, 3)
    assert noise.shape == (3, 16, 8) and noise.dtype == np.float32
    np.testing.assert_array_equal(noise, trainer.schedule.memory_noise_for(30, 3))  # resumable
    assert not np.array_equal(noise, trainer.schedule.memory_noise_for(31, 3))
    spread = noise.reshape(3, -1).std(axis=1)  # one scale per sequence, within [0, 0.5]
    assert len(set(np.round(spread, 3))) == 3 and spread.max() < 0.5 * 1.3
    result = trainer.run()  # polishing already begun: it trains its 25 steps, then stops
    assert result.step == 40 and result.reason == "target"


def test_memory_noise_without_polish_steps_is_on_from_the_first_step(tmp_path):
    trainer = _noise_trainer(tmp_path, polish_steps=0)
    assert trainer.schedule.polish is None and trainer.schedule.noise_on(1)
    assert trainer.schedule.memory_noise_for(1, 3).any()
    off = _noise_trainer(tmp_path / "off", polish_steps=0, memory_noise=0.0)
    assert not off.schedule.noise_on(1) and not off.schedule.memory_noise_for(1, 3).any()


def test_controller_noise_follows_the_noise_schedule_per_time_step(tmp_path):
    trainer = _noise_trainer(tmp_path, memory_noise=0.0, controller_noise=0.2)
    assert trainer.config.noisy and trainer.config.noise_after == 12
    batch = trainer.batch_for(30)
    schedule = trainer.schedule
    assert not schedule.noise_on(30) and not schedule.controller_noise_for(30, batch).any()
    trainer.schedule.polish.since.assign(10)
    assert not trainer.schedule.controller_noise_for(22, trainer.batch_for(22)).any()
    noise = trainer.schedule.controller_noise_for(30, batch)
    assert noise.shape == (3, batch.inputs.shape[1], 8) and noise.dtype == np.float32
    # resumable
    np.testing.assert_array_equal(noise, trainer.schedule.controller_noise_for(30, batch))
    spread = noise.reshape(3, -1).std(axis=1)  # one scale per sequence, within [0, 0.2]
    assert len(set(np.round(spread, 4))) == 3 and spread.max() < 0.2 * 1.3
    assert not trainer.schedule.memory_noise_for(30, 3).any()  # the memory noise stays off
    result = trainer.run()  # the five-tensor step trains
    assert result.step == 40 and result.reason == "target"


def test_controller_noise_needs_an_lstm_controller(tmp_path):
    from ntm.contract.fields import ConfigError
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run

    tc = TrainConfig(task="copy", controller_noise=0.1)
    with pytest.raises(ConfigError, match="controller_noise needs the lstm controller"):
        Run.create(tmp_path / "run", tc, controller="feedforward")
    run = Run.create(tmp_path / "run", TrainConfig(task="copy"), controller="feedforward")
    with pytest.raises(ConfigError, match="controller_noise needs the lstm controller"):
        run.resumed({"controller_noise": 0.1})


def test_noise_after_must_leave_the_noise_some_polish_steps():
    from ntm.contract.fields import ConfigError
    from ntm.training.config import TrainConfig

    assert TrainConfig(task="copy", memory_noise=0.5, polish_steps=6000).noise_after == 3000
    assert TrainConfig(task="copy", memory_noise=0.5, polish_steps=100,
                       noise_after=0).noise_after == 0
    with pytest.raises(ConfigError, match=r"noise_after \(100\) must be below polish_steps"):
        TrainConfig(task="copy", memory_noise=0.5, polish_steps=100, noise_after=100)
    with pytest.raises(ConfigError, match=r"noise_after \(100\) must be below polish_steps"):
        TrainConfig(task="copy", memory_noise=0.0, controller_noise=0.1, polish_steps=100,
                    noise_after=100)
    assert TrainConfig(task="copy", memory_noise=0.0, blank_runs=0.0, polish_steps=100,
                       noise_after=100)
    with pytest.raises(ConfigError, match=r"noise_after \(100\) must be below polish_steps"):
        TrainConfig(task="copy", memory_noise=0.0, polish_steps=100, noise_after=100)  # blanks


def test_a_resumed_run_keeps_its_noise_after_and_says_so_when_it_no_longer_fits(tmp_path):
    from ntm.contract.fields import ConfigError
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run

    run = Run.create(tmp_path / "run", TrainConfig(task="copy", max_length=3), memory_size=8,
                     memory_width=4, controller_size=8)  # copy's polish: noise after 3,000 of 6,000
    assert run.resumed({"polish_steps": 9000}).train_config.noise_after == 3000
    with pytest.raises(ConfigError, match=r"noise_after \(3000\) must be below polish_steps "
                                          r"\(2000\).*--noise-after is given"):
        run.resumed({"polish_steps": 2000})
    assert run.resumed({"polish_steps": 2000, "noise_after": 1000}).train_config.noise_after \
        == 1000


def test_a_polishing_run_switches_the_term_on_at_the_target_and_trains_on(tmp_path):
    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    tc = TrainConfig(task="copy", max_length=3, batch_size=2, steps=200, eval_every=10,
                     eval_size=4, checkpoint_every=10, log_every=10, target_error=1000,
                     patience_evals=1, write_entropy=0.5, polish_steps=25)
    run = Run.create(tmp_path / "run", tc, memory_size=8, memory_width=4, controller_size=8)
    trainer = Trainer(run)
    assert float(trainer.schedule.polish.entropy_weight.numpy()) == 0.0
    result = trainer.run()
    # reached at the first evaluation (step 10), polished 25 steps, stopped at the next
    # evaluation that found the target again (step 40)
    assert int(trainer.schedule.polish.since.numpy()) == 10 and result.step == 40
    assert float(trainer.schedule.polish.entropy_weight.numpy()) == 0.5
    resumed = Trainer(Run.load(tmp_path / "run"), resume=True)
    assert int(resumed.schedule.polish.since.numpy()) == 10


def test_configs_without_the_new_fields_run_as_before():
    from ntm.training.config import TrainConfig

    old = TrainConfig.from_dict({"task": "copy"})
    assert old.write_entropy == 0 and old.polish_steps == 0 and not old.polishes
    assert old.memory_noise == 0
    assert TrainConfig(task="copy", write_entropy=0.01, polish_steps=10).polishes


def test_resume_switches_polishing_on_and_says_what_starts_afresh(tmp_path):
    import io

    from ntm.training.config import TrainConfig
    from ntm.training.runs import Run
    from ntm.training.trainer import Trainer

    tc = TrainConfig(task="copy", max_length=3, batch_size=2, steps=20, eval_every=10,
                     eval_size=4, checkpoint_every=10, log_every=10, target_error=-1,
                     write_entropy=0.0, memory_noise=0.0,
                     blank_runs=0.0)  # unpolished, as copy runs were before it polished
    Trainer(Run.create(tmp_path / "run", tc, memory_size=8, memory_width=4,
                       controller_size=8)).run()
    run = Run.load(tmp_path / "run").resumed({"steps": 30, "write_entropy": 0.1,
                                              "polish_steps": 5, "target_error": 1000.0})
    out = io.StringIO()
    trainer = Trainer(run, resume=True, stream=out)
    assert "starts afresh" in trainer.resume_note
    trainer.run()
    assert int(trainer.schedule.polish.since.numpy()) == 30  # reached at step 30, the last one
    assert "starts afresh" in out.getvalue()
