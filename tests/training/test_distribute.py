"""Training under tf.distribute: mirrored over two logical CPUs and two workers on loopback give
the single-device losses and weights on the same global batch; bad set-ups fail clearly.

Logical devices and a multi-worker cluster must be configured before TensorFlow starts, so
those runs are ``ntm train`` subprocesses; the in-process tests use the one CPU device.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from ntm.cli.main import cli  # noqa: E402
from ntm.contract.fields import ConfigError
from ntm.training.config import TrainConfig
from ntm.training.distribute import parse_tf_config  # noqa: E402
from ntm.training.runs import Run  # noqa: E402
from ntm.training.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STEPS = 5
# Tiny model, global batch 8, every step logged; an evaluation and a checkpoint mid-run.
TINY = ["--task", "copy", "--max-length", "3", "--memory-size", "12", "--memory-width", "6",
        "--controller-size", "16", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-2",
        "--steps", str(STEPS), "--log-every", "1", "--eval-every", "3", "--checkpoint-every", "3",
        "--eval-size", "8", "--target-error", "-1"]
TIMEOUT = 180  # seconds per subprocess; a hung collective fails the test instead of the suite


def start_training(out: Path, *args: str, tf_config: str | None = None,
                   scratch: Path | None = None, log: Path | None = None) -> subprocess.Popen:
    """``ntm train TINY --out out ARGS`` in a fresh Python (TensorFlow not yet started); its
    output goes to a pipe, or to the file ``log``."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    if scratch is not None:
        env["TMPDIR"] = str(scratch)  # where a non-chief worker keeps its checkpoints
    stdout = subprocess.PIPE if log is None else log.open("w")
    process = subprocess.Popen([sys.executable, "-m", "ntm.cli.main", "train", *TINY, "--out",
                                str(out), *args], cwd=REPO, env=env, stdout=stdout,
                               stderr=subprocess.STDOUT, text=True)
    if log is not None:
        stdout.close()  # the child writes to its own copy
    return process


def finish(process: subprocess.Popen) -> str:
    """Wait for a training subprocess; its output, after checking it exited 0."""
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"ntm train hung:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record["loss"] for record in map(json.loads, lines) if "loss" in record]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Per-step losses within 1e-5 relative, final weights within float32 rounding."""
    assert len(losses(run_dir)) == STEPS
    np.testing.assert_allclose(losses(run_dir), losses(reference), rtol=1e-5)
    weights, expected = (Run.load(d).model.trainable_variables for d in (run_dir, reference))
    for a, b in zip(weights, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.name)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


@pytest.fixture(scope="module")
def single_device_run(tmp_path_factory) -> Path:
    """The reference: the same global batches on one device."""
    out = tmp_path_factory.mktemp("default") / "run"
    finish(start_training(out, "--strategy", "default"))
    return out


def test_mirrored_over_two_cpus_matches_one_device(single_device_run, tmp_path):
    out = tmp_path / "run"
    output = finish(start_training(out, "--strategy", "mirrored", "--cpu-devices", "2"))
    assert "2 replica(s)" in output
    assert_same_run(out, single_device_run)
    assert json.loads((out / "config.json").read_text())["train"]["strategy"] == "mirrored"


BIND_FAILURES = ("Could not start gRPC server", "already in use")  # a port taken meanwhile


def train_two_workers(chief_out: Path, other_out: Path, scratch: Path,
                      attempts: int = 3) -> list[str]:
    """Both workers' outputs, after both exited 0. The ports are free when chosen but another
    process may take one before a worker binds it: a worker that cannot bind fails at once,
    and then both are stopped and started again on fresh ports."""
    for attempt in range(attempts):
        for leftover in (chief_out, other_out):  # a failed attempt's partial runs
            shutil.rmtree(leftover, ignore_errors=True)
        ports = free_ports(2)
        logs = [scratch.parent / f"worker{i}-attempt{attempt}.log" for i in range(2)]
        workers = [start_training(chief_out, "--strategy", "multi-worker",
                                  tf_config=tf_config(ports, 0), log=logs[0]),
                   start_training(other_out, "--strategy", "multi-worker",
                                  tf_config=tf_config(ports, 1), scratch=scratch, log=logs[1])]
        deadline = time.monotonic() + TIMEOUT
        while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
            if any(w.poll() not in (None, 0) for w in workers):
                break  # one failed: its peer would wait for it until the timeout
            try:
                next(w for w in workers if w.poll() is None).wait(timeout=0.5)
            except (subprocess.TimeoutExpired, StopIteration):
                pass
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()
        outputs = [log.read_text() for log in logs]
        if all(w.returncode == 0 for w in workers):
            return outputs
        if not any(failure in output for output in outputs for failure in BIND_FAILURES):
            break
    pytest.fail("multi-worker training failed:\n" + "\n----\n".join(o[-3000:] for o in outputs))


def test_two_workers_on_loopback_match_one_device(single_device_run, tmp_path):
    chief_out, other_out, scratch = tmp_path / "run", tmp_path / "worker1-run", tmp_path / "tmp"
    scratch.mkdir()
    outputs = train_two_workers(chief_out, other_out, scratch)
    assert all("2 replica(s)" in output for output in outputs)
    assert f"checkpoint in {chief_out}/checkpoints" in outputs[0]
    assert "the chief worker wrote the run" in outputs[1]
    assert_same_run(chief_out, single_device_run)
    assert not other_out.exists(), "a non-chief worker wrote to its --out"
    assert not list(scratch.iterdir()), "a non-chief worker left its scratch directory behind"


def tiny_trainer(run_dir: Path, steps: int, changes: dict | None = None, **kwargs) -> Trainer:
    """An in-process trainer of the tiny model (global batch 4, every step logged);
    ``changes``: TrainConfig fields to change."""
    tc = TrainConfig(**{**dict(task="copy", max_length=3, batch_size=4, optimizer="adam",
                               learning_rate=1e-2, steps=steps, eval_every=100, eval_size=4,
                               log_every=1, target_error=-1), **(changes or {})})
    run = Run.create(run_dir, tc, memory_size=12, memory_width=6, controller_size=16)
    return Trainer(run, **kwargs)


def assert_same_weights(trainer: Trainer, expected: Trainer) -> None:
    for a, b in zip(trainer.model.trainable_variables, expected.model.trainable_variables):
        assert np.isfinite(a.numpy()).all()
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)


def test_the_replicated_step_skips_a_nan_step_like_the_plain_one(tmp_path, nan_at):
    """In process, mirrored over the one CPU device: the replicated step's NaN guard and update
    (``strategy.extended.update``) give what the plain step gives."""
    plain = nan_at(tiny_trainer(tmp_path / "plain", 6), {3})
    plain.run()
    assert int(plain.optimizer.iterations.numpy()) == 5
    mirrored = nan_at(tiny_trainer(tmp_path / "mirrored", 6,
                                   strategy=tf.distribute.MirroredStrategy(["/cpu:0"])), {3})
    mirrored.run()
    assert int(mirrored.optimizer.iterations.numpy()) == 5  # 6 steps, one skipped
    assert_same_weights(mirrored, plain)


def test_the_replicated_step_takes_the_noise_like_the_plain_one(tmp_path):
    """Memory and controller noise from the first step: the replicated step slices both noises
    with the batch and trains to the plain step's weights."""
    noisy = dict(polish_steps=0, memory_noise=0.5, controller_noise=0.3)
    plain = tiny_trainer(tmp_path / "plain", 4, noisy)
    plain.run()
    mirrored = tiny_trainer(tmp_path / "mirrored", 4, noisy,
                            strategy=tf.distribute.MirroredStrategy(["/cpu:0"]))
    mirrored.run()
    assert_same_weights(mirrored, plain)
    quiet = tiny_trainer(tmp_path / "quiet", 4, {**noisy, "controller_noise": 0.0})
    quiet.run()
    moved = [np.abs(a.numpy() - b.numpy()).max() for a, b in
             zip(plain.model.trainable_variables, quiet.model.trainable_variables)]
    assert max(moved) > 1e-4  # the controller noise reached the weights


def test_a_mirrored_checkpoint_resumes_on_one_device(tmp_path):
    full = tiny_trainer(tmp_path / "full", 4)
    full.run()
    tiny_trainer(tmp_path / "split", 2, strategy=tf.distribute.MirroredStrategy(["/cpu:0"])).run()
    resumed = tiny_trainer(tmp_path / "split", 4, resume=True)
    assert int(resumed.state.step.numpy()) == 2
    resumed.run()
    assert_same_weights(resumed, full)


def test_old_configs_without_a_strategy_load_as_default():
    assert TrainConfig.from_dict({"task": "copy", "batch_size": 4}).strategy == "default"
    with pytest.raises(ConfigError, match="strategy must be one of"):
        TrainConfig(strategy="parameter-server")


@pytest.mark.parametrize("text, message", [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is malformed"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "TF_CONFIG is malformed"),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "no 'worker'"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     "not in its cluster"),
])
def test_bad_tf_config_is_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_tf_config(text)


def test_multi_worker_without_tf_config_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["train", *TINY, "--out", str(tmp_path / "run"),
                                      "--strategy", "multi-worker"])
    assert result.exit_code == 2, result.output
    assert "TF_CONFIG" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_cpu_devices_need_the_mirrored_strategy(tmp_path):
    result = CliRunner().invoke(cli, ["train", *TINY, "--out", str(tmp_path / "run"),
                                      "--cpu-devices", "2"])
    assert result.exit_code == 2 and "--strategy mirrored" in result.output


def test_a_batch_that_does_not_split_over_the_replicas_is_refused(tmp_path):
    process = start_training(tmp_path / "run", "--strategy", "mirrored", "--cpu-devices", "2",
                             "--batch-size", "7")
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 2, output
    assert "--batch-size" in output and "2 replicas" in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_a_worker_whose_address_is_taken_says_so(tmp_path):
    """Another process holds this worker's port: one line naming the address, exit code 1,
    no traceback and no run directory."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1], *free_ports(1)]
        process = start_training(tmp_path / "run", "--strategy", "multi-worker",
                                 tf_config=tf_config(ports, 0))
        output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1, output
    assert f"127.0.0.1:{ports[0]} in use" in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()
