"""Training the LSTM baseline: the same loop, files, resume and evaluation as the NTM's; the
NTM's own training settings are off for it, or refused when asked for."""

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.contract.fields import ConfigError  # noqa: E402
from ntm.contract.tasks import Difficulty  # noqa: E402
from ntm.model.lstm_baseline import LSTMBaseline  # noqa: E402
from ntm.training.config import TrainConfig, train_config_for  # noqa: E402
from ntm.training.runs import Run  # noqa: E402
from ntm.training.trainer import Trainer  # noqa: E402

TINY_BASELINE = dict(architecture="lstm", lstm_layers=2, lstm_units=16)


def make(run_dir, resume=False, **train):
    options = dict(task="copy", max_length=3, batch_size=8, optimizer="adam",
                   learning_rate=1e-2, steps=60, eval_every=20, eval_size=16,
                   checkpoint_every=10, log_every=5, target_error=-1)
    run = Run.create(run_dir, train_config_for("lstm", **{**options, **train}), **TINY_BASELINE)
    return Trainer(run, resume=resume)


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_short_run_learns_writes_its_files_and_reloads_as_the_baseline(tmp_path):
    result = make(tmp_path, steps=100).run()
    assert result.step == 100 and result.reason == "steps"
    losses = [m["loss"] for m in metrics(tmp_path) if "loss" in m]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert any("eval_bits_per_seq" in m for m in metrics(tmp_path))
    assert list((tmp_path / "tensorboard").iterdir())
    assert json.loads((tmp_path / "config.json").read_text())["model"]["architecture"] == "lstm"
    run = Run.load(tmp_path)
    assert isinstance(run.model, LSTMBaseline) and int(run.state.step.numpy()) == 100
    rows = run.evaluate([Difficulty(2), Difficulty(6)], sequences=6)
    assert [r.length for r in rows] == [2, 6] and all(r.memory_size is None for r in rows)
    assert all(np.isfinite(r.mean_bits) for r in rows)


def test_resume_follows_the_uninterrupted_trajectory(tmp_path):
    full = make(tmp_path / "full", steps=30)
    full.run()
    make(tmp_path / "split", steps=15).run()
    second = make(tmp_path / "split", steps=30, resume=True)
    assert int(second.state.step.numpy()) == 15 and second.resume_note is None
    second.run()
    for a, b in zip(full.model.trainable_variables, second.model.trainable_variables,
                    strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    split = [m["loss"] for m in metrics(tmp_path / "split") if "loss" in m]
    whole = [m["loss"] for m in metrics(tmp_path / "full") if "loss" in m]
    np.testing.assert_allclose(split, whole, rtol=1e-5)


def test_the_ntms_polish_is_off_for_the_baseline_unless_a_data_setting_is_given():
    """Copy's defaults polish the NTM (entropy, memory noise, blank runs); the baseline's run
    trains on the plain task. Blank runs change the data alone, so the baseline may have them."""
    plain = train_config_for("lstm", task="copy")
    assert (plain.write_entropy, plain.memory_noise, plain.blank_runs) == (0, 0, 0)
    assert not plain.polishes
    assert train_config_for("lstm", task="copy", blank_runs=0.3).blank_runs == 0.3
    ntm = train_config_for("ntm", task="copy")
    assert ntm == TrainConfig(task="copy") and ntm.write_entropy > 0


@pytest.mark.parametrize("setting", ["write_entropy", "memory_noise", "controller_noise"])
def test_a_training_setting_only_the_ntm_takes_is_refused_by_name(tmp_path, setting):
    config = train_config_for("lstm", task="copy", **{setting: 0.1})
    with pytest.raises(ConfigError, match=f"{setting} 0.1: the LSTM baseline") as caught:
        Run.create(tmp_path, config, **TINY_BASELINE)
    assert caught.value.config_field == setting
    run = Run.create(tmp_path, train_config_for("lstm", task="copy"), **TINY_BASELINE)
    with pytest.raises(ConfigError, match=setting):
        run.resumed({setting: 0.1})


def test_a_baseline_with_blank_runs_polishes_without_an_entropy_term(tmp_path):
    trainer = make(tmp_path, steps=40, target_error=100.0, blank_runs=0.5, polish_steps=10,
                   patience_evals=1)
    result = trainer.run()
    assert result.reason == "target" and result.step == 40  # reached at 20, polished 10 steps
    assert int(trainer.schedule.polish.since.numpy()) == 20


def test_evaluate_has_no_memory_rows_to_give_the_baseline(tmp_path):
    make(tmp_path, steps=10).run()
    run = Run.load(tmp_path)
    with pytest.raises(ConfigError, match="has no memory") as caught:
        run.evaluate([Difficulty(2)], sequences=2, memory_size=64)
    assert caught.value.config_field == "memory_size"


def test_a_restart_reinitialises_the_baseline_from_a_new_seed(tmp_path):
    from ntm.model.architectures import build_model

    trainer = make(tmp_path, steps=10, restart_at=20, restart_above=0.5, seed=3)
    trainer.run()
    seed = trainer.restart(step=10)
    fresh = build_model(trainer.model_config, seed=seed)
    assert isinstance(fresh, LSTMBaseline)
    for got, want in zip(trainer.model.trainable_variables, fresh.trainable_variables,
                         strict=True):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert int(trainer.optimizer.iterations.numpy()) == 0
