"""``ntm train`` killed with SIGKILL mid-run, then ``--resume``: it continues from the last
checkpoint and follows the same loss trajectory as an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[2]
TINY = ["--task", "copy", "--max-length", "4", "--memory-size", "16", "--memory-width", "6",
        "--controller-size", "16", "--eval-every", "1000", "--eval-size", "8",
        "--log-every", "1", "--target-error", "-1", "--seed", "3"]


def train(out: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "ntm.cli.main", "train", "--out", str(out), *TINY, *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if wait:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)


def losses(run: Path) -> dict[int, float]:
    """step -> training loss; a later line for the same step wins (a resumed run rewrites)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            out[record["step"]] = record["loss"]
    return out


def checkpointed_step(run: Path) -> int:
    state = run / "checkpoints" / "checkpoint"
    if not state.exists():
        return 0
    first = state.read_text().splitlines()[0]  # model_checkpoint_path: "ckpt-N"
    return int(first.rsplit("-", 1)[1].strip('"'))


def test_sigkill_then_resume_follows_the_uninterrupted_trajectory(tmp_path):
    steps = 240
    reference = train(tmp_path / "reference", "--steps", str(steps), "--checkpoint-every", "1000")
    assert reference.returncode == 0, reference.stderr
    expected = losses(tmp_path / "reference")

    run = tmp_path / "killed"
    proc = train(run, "--steps", str(steps), "--checkpoint-every", "30", wait=False)
    deadline = time.time() + 240
    while checkpointed_step(run) < 60 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed; raise --steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed_at = max(losses(run))
    restored = checkpointed_step(run)
    assert 60 <= restored < steps

    with (run / "metrics.jsonl").open("a") as f:  # as if killed in the middle of a write
        f.write('{"step": 99')
    resumed = train(run, "--steps", str(steps), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got = losses(run)
    assert sorted(got) == sorted(expected) == list(range(1, steps + 1))
    for step in range(restored + 1, steps + 1):  # everything trained after the restore
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), (
            f"step {step}: resumed {got[step]} vs uninterrupted {expected[step]} "
            f"(killed at {killed_at}, restored {restored})")


def test_threads_change_the_speed_not_the_numbers(tmp_path):
    """``--threads`` sets how many independent operations run at once (the default: every CPU);
    each operation's arithmetic is the same, so the losses are equal bit for bit."""
    one = train(tmp_path / "one", "--steps", "40", "--threads", "1")
    two = train(tmp_path / "two", "--steps", "40", "--threads", "2")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert losses(tmp_path / "one") == losses(tmp_path / "two")


def test_sigkill_while_checkpointing_every_step_leaves_a_restorable_run(tmp_path):
    """With a checkpoint every step a kill almost surely lands inside a save: TensorFlow writes
    each checkpoint under a temporary name and renames it, then updates the state file, so the
    last complete checkpoint must still restore."""
    run = tmp_path / "busy"
    proc = train(run, "--steps", "5000", "--checkpoint-every", "1", "--keep-checkpoints", "2",
                 wait=False)
    deadline = time.time() + 240
    while checkpointed_step(run) < 25 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.013)  # somewhere inside the next steps' saves
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    restored = checkpointed_step(run)
    resumed = train(run, "--steps", str(restored + 3), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert max(losses(run)) == restored + 3
