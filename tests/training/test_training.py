"""Training: the loss falls, resume is exact, NaN never reaches a checkpoint."""

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from ntm.training.config import TrainConfig
from ntm.training.runs import Run  # noqa: E402
from ntm.training.trainer import Trainer, TrainingError  # noqa: E402

TINY_MODEL = dict(memory_size=12, memory_width=6, controller_size=24)


def make(run_dir, resume=False, **train):
    defaults = dict(task="copy", max_length=3, batch_size=8, optimizer="adam",
                    learning_rate=1e-2, steps=60, eval_every=20, eval_size=16,
                    checkpoint_every=10, log_every=5, curriculum_stages=1, target_error=-1)
    run = Run.create(run_dir, TrainConfig(**{**defaults, **train}), **TINY_MODEL)
    return Trainer(run, resume=resume)


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_short_run_loss_falls_and_writes_its_files(tmp_path):
    result = make(tmp_path, steps=120).run()
    assert result.step == 120 and result.reason == "steps"
    losses = [m["loss"] for m in metrics(tmp_path) if "loss" in m]
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    assert (tmp_path / "config.json").is_file()
    assert (tmp_path / "summary.json").is_file()
    assert list((tmp_path / "tensorboard").iterdir())
    assert any(m.get("eval_bits_per_seq") is not None for m in metrics(tmp_path))
    run = Run.load(tmp_path)
    assert int(run.state.step.numpy()) == 120 and run.model_config.memory_size == 12


def test_resume_follows_the_uninterrupted_trajectory(tmp_path):
    full = make(tmp_path / "full", steps=40)
    full.run()
    first = make(tmp_path / "split", steps=20)
    first.run()
    second = make(tmp_path / "split", steps=40, resume=True)
    assert int(second.state.step.numpy()) == 20
    second.run()
    for a, b in zip(full.model.trainable_variables, second.model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    split_losses = [m["loss"] for m in metrics(tmp_path / "split") if "loss" in m]
    full_losses = [m["loss"] for m in metrics(tmp_path / "full") if "loss" in m]
    np.testing.assert_allclose(split_losses, full_losses, rtol=1e-5)


def test_a_nan_step_is_skipped_and_never_saved(tmp_path, nan_at):
    trainer = nan_at(make(tmp_path, steps=20), {7})
    trainer.run()
    assert int(trainer.optimizer.iterations.numpy()) == 19  # 20 steps, one skipped
    model = Run.load(tmp_path).model
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_persistent_nans_restore_then_stop_clearly(tmp_path, nan_at):
    trainer = nan_at(make(tmp_path, steps=200), set(range(15, 200)))
    with pytest.raises(TrainingError, match="non-finite"):
        trainer.run()
    model = Run.load(tmp_path).model
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)


def test_stops_early_at_the_target(tmp_path):
    # No entropy, no noise: copy's default polish would train 6,000 steps past the target first.
    result = make(tmp_path, steps=10_000, target_error=100.0, patience_evals=2,
                  write_entropy=0.0, memory_noise=0.0, blank_runs=0.0).run()
    assert result.reason == "target" and result.step == 40


def test_a_polish_that_never_regains_the_target_ends_on_the_weights_that_met_it(tmp_path):
    """Seed 9 of copy's sweep: polishing knocked a converged run over and the step budget ran
    out first. The run ends on the weights of its last evaluation at the target instead."""
    trainer = make(tmp_path, steps=80, target_error=0.5, write_entropy=0.01, polish_steps=30,
                   memory_noise=0.0, blank_runs=0.0)
    # Held out: the target at steps 20 (polish begins) and 40, lost at 60 and 80; then the
    # re-evaluation of the weights put back.
    errors = iter([0.1, 0.2, 3.0, 4.0, 0.2])
    trainer.evaluate_on = lambda batch: (next(errors), {})
    kept = {}
    save = trainer.writer.save_at_target

    def spy(step, variables):
        kept[step] = [v.numpy().copy() for v in variables]
        return save(step, variables)

    trainer.writer.save_at_target = spy
    result = trainer.run()
    assert result.reason == "steps" and result.step == 80 and sorted(kept) == [20, 40]
    assert result.eval_bits == pytest.approx(0.2)
    reopened = Run.load(tmp_path).model  # the run's latest checkpoint holds them
    for got, want in zip(reopened.trainable_variables, kept[40]):
        np.testing.assert_array_equal(got.numpy(), want)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["weights_from_step"], summary["polish_heldout_bits_per_seq"]) == (40, 4.0)
    assert metrics(tmp_path)[-1]["weights_from_step"] == 40


def test_a_polish_that_ends_at_the_target_or_no_polish_keeps_its_weights(tmp_path):
    polished = make(tmp_path / "polished", steps=60, target_error=0.5, write_entropy=0.01,
                    polish_steps=30, memory_noise=0.0, blank_runs=0.0)
    errors = iter([0.1, 3.0, 0.3])  # the last evaluation meets the target: nothing to undo
    polished.error_on = lambda batch: next(errors)
    assert polished.run().reason == "steps" and not polished.reverted
    plain = make(tmp_path / "plain", steps=20, write_entropy=0.0, memory_noise=0.0,
                 blank_runs=0.0, target_error=0.5)
    plain.error_on = lambda batch: 3.0
    assert plain.run().reason == "steps" and not plain.reverted
    assert not (tmp_path / "plain" / "at-target").exists()


def test_restart_reinitialises_weights_and_optimiser_and_goes_on(tmp_path):
    from ntm.model.machine import NTM
    from ntm.training.schedule import RESTART_SEED_STRIDE

    trainer = make(tmp_path, steps=10, restart_at=20, restart_above=0.5, seed=3)
    trainer.run()
    assert int(trainer.optimizer.iterations.numpy()) == 10
    seed = trainer.restart(step=10)
    assert seed == 3 + RESTART_SEED_STRIDE
    fresh = NTM(trainer.model_config, seed=seed)
    for got, want in zip(trainer.model.trainable_variables, fresh.trainable_variables):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert int(trainer.optimizer.iterations.numpy()) == 0
    assert all(not np.any(s.numpy()) for s in trainer.optimizer.m + trainer.optimizer.v)
    restarts = trainer.schedule.restarts
    assert (int(restarts.count.numpy()), int(restarts.since.numpy())) == (1, 10)
    assert int(trainer.state.step.numpy()) == 10  # steps, data and clock go on


def test_a_run_stuck_above_the_bar_restarts_every_restart_at_steps(tmp_path):
    # A tiny model cannot reach 0 bits/seq in 60 steps: it restarts at steps 20 and 40 (each
    # evaluation 20 steps after the last restart), and a resumed run knows where it stopped.
    make(tmp_path, steps=40, restart_at=20, restart_above=0.0).run()
    restarts = [m["restart"] for m in metrics(tmp_path) if "restart" in m]
    assert [r["attempt"] for r in restarts] == [1, 2]
    resumed = make(tmp_path, steps=60, restart_at=20, restart_above=0.0, resume=True)
    assert int(resumed.schedule.restarts.count.numpy()) == 2
    resumed.run()
    steps = [m["step"] for m in metrics(tmp_path) if "restart" in m]
    assert steps == [20, 40, 60]


def test_restarts_off_by_default_and_older_checkpoints_restore(tmp_path):
    trainer = make(tmp_path, steps=20, restart_above=0.0)
    assert trainer.schedule.restarts is None
    trainer.run()
    assert not [m for m in metrics(tmp_path) if "restart" in m]
    assert int(make(tmp_path, steps=30, resume=True).state.step.numpy()) == 20


def test_restart_at_defaults_to_the_tasks_own_and_old_runs_never_restart():
    assert TrainConfig(task="recall").restart_at == 8000  # RecallTask.train_defaults
    assert TrainConfig(task="copy").restart_at == 0
    assert TrainConfig(task="recall", restart_at=0).restart_at == 0  # the user's word wins
    saved = TrainConfig(task="recall").to_dict()
    assert TrainConfig.from_dict(saved).restart_at == 8000
    del saved["restart_at"]  # a config.json written before restarts existed
    assert TrainConfig.from_dict(saved).restart_at == 0


def test_copy_polishes_by_default_and_older_copy_runs_do_not():
    config = TrainConfig(task="copy")  # CopyTask.train_defaults, chosen by benchmarks/seeds.py
    assert (config.write_entropy, config.polish_steps, config.polishes) == (0.01, 6000, True)
    assert (config.memory_noise, config.blank_runs, config.noise_after) == (0.5, 0.3, 3000)
    assert TrainConfig(task="recall").blank_runs == 0 == TrainConfig(task="repeat-copy").blank_runs
    assert TrainConfig(task="copy", write_entropy=0.0).polishes  # memory noise still polishes
    assert TrainConfig(task="copy", write_entropy=0.0, memory_noise=0.0).polishes  # blanks
    assert not TrainConfig(task="copy", write_entropy=0.0, memory_noise=0.0,
                           blank_runs=0.0).polishes  # the user's word wins
    assert not TrainConfig(task="recall").polishes and not TrainConfig(task="repeat-copy").polishes
    saved = TrainConfig(task="copy").to_dict()
    # a config.json from before polishing
    del saved["write_entropy"], saved["polish_steps"], saved["memory_noise"], saved["noise_after"]
    del saved["blank_runs"]
    assert not TrainConfig.from_dict(saved).polishes


def test_a_config_looks_its_task_defaults_up_once(monkeypatch):
    """Each lookup reads the installed plug-ins' entry points (~20 ms), and ``ntm --help``
    builds a config: one lookup per default was a tenth of a second of every command's start."""
    import ntm.training.config as config
    looked_up, real = [], config.get_task
    monkeypatch.setattr(config, "get_task", lambda name: looked_up.append(name) or real(name))
    assert TrainConfig(task="recall").restart_at == 8000
    assert looked_up == ["recall"]
    TrainConfig(task="copy", restart_at=0, write_entropy=0.0, memory_noise=0.0, blank_runs=0.0,
                polish_steps=0)
    assert looked_up == ["recall"]  # nothing left to the task: no lookup


def test_blank_runs_follow_the_noise_schedule(tmp_path):
    """Off before the polish's noise steps, on after them; the batch is otherwise the same."""
    plain = make(tmp_path / "plain", max_length=8)
    blanking = make(tmp_path / "blank", max_length=8, blank_runs=1.0, write_entropy=0.01,
                    polish_steps=10, noise_after=4)
    assert blanking.config.noisy and "blank runs 1" in blanking.schedule.noise_plan()
    np.testing.assert_array_equal(blanking.batch_for(7).inputs, plain.batch_for(7).inputs)
    # polishing since step 5: noise (and blanks) from step 10
    blanking.schedule.polish.since.assign(5)
    np.testing.assert_array_equal(blanking.batch_for(9).inputs, plain.batch_for(9).inputs)
    on, off = blanking.batch_for(10), plain.batch_for(10)
    assert not np.array_equal(on.inputs, off.inputs)
    np.testing.assert_array_equal(on.mask, off.mask)
    blank_items = lambda b: int((~b.inputs[:, :, :8].any(axis=2) * (b.mask == 0)).sum())
    assert blank_items(on) > blank_items(off)


def test_ngrams_held_out_evaluation_logs_its_cost_beside_the_optimal_estimators(tmp_path):
    """Bits wrong say little for N-grams (even the optimal estimator gets random bits wrong):
    each held-out evaluation also logs the task's cost in bits, the optimal estimator's on the
    same sequences, and the excess, as TensorBoard scalars too."""
    config = TrainConfig(task="ngrams", min_length=20, max_length=20, batch_size=8, steps=4,
                         eval_every=2, eval_size=4, checkpoint_every=2, log_every=2,
                         curriculum_stages=1, target_error=-1)
    Trainer(Run.create(tmp_path, config, **{**TINY_MODEL, "memory_size": 33})).run()
    evals = [m for m in metrics(tmp_path) if "eval_bits_per_seq" in m]
    assert evals
    for m in evals:
        assert m["eval_cost_bits"] > 0 and m["eval_optimal_bits"] > 0
        assert m["eval_excess_bits"] == pytest.approx(m["eval_cost_bits"] - m["eval_optimal_bits"])
    copy = make(tmp_path / "copy", steps=4, eval_every=2, checkpoint_every=2, log_every=2)
    copy.run()
    assert not any(k.startswith("eval_cost") for m in metrics(tmp_path / "copy") for k in m)


def test_a_task_sets_its_model_defaults_for_a_new_ntm_run_only_where_left_alone(tmp_path):
    """N-grams' NTM gets its grown-memory key rule (power 0) unless the options name one; the
    LSTM baseline, which has no memory, keeps the config's default (changing an NTM setting
    would be refused for it)."""
    from ntm.training.config import train_config_for

    config = TrainConfig(task="ngrams", min_length=20, max_length=20)
    tiny = {**TINY_MODEL, "memory_size": 33}
    assert Run.create(tmp_path / "a", config, **tiny).model_config.grow_strength_power == 0
    given = Run.create(tmp_path / "b", config, **{**tiny, "grow_strength_power": 1.0})
    assert given.model_config.grow_strength_power == 1.0
    lstm = Run.create(tmp_path / "c", train_config_for("lstm", task="ngrams"),
                      architecture="lstm", lstm_units=8)
    assert lstm.model_config.grow_strength_power == 2.0
    copy = TrainConfig(task="copy", min_length=1, max_length=5)
    assert Run.create(tmp_path / "d", copy, **TINY_MODEL).model_config.grow_strength_power == 2.0


def test_priority_sort_starts_its_ntm_from_a_learned_memory_unless_told(tmp_path):
    config = TrainConfig(task="priority-sort")
    tiny = {**TINY_MODEL, "memory_size": 32}
    run = Run.create(tmp_path / "a", config, **tiny)
    assert run.model_config.initial_memory == "learned"
    told = Run.create(tmp_path / "b", config, **{**tiny, "initial_memory": "constant"})
    assert told.model_config.initial_memory == "constant"
    copy = TrainConfig(task="copy", min_length=1, max_length=5)
    assert Run.create(tmp_path / "c", copy, **TINY_MODEL).model_config.initial_memory == "constant"
