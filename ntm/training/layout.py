"""What a run directory holds, by name, and the error for one that is wrong (no TensorFlow):

    config.json      model + training configuration (``ntm.training.config``)
    checkpoints/     tf.train.CheckpointManager files
    at-target/       a polishing run's weights at its last evaluation that met the target
    metrics.jsonl    one JSON object per logged step / evaluation
    tensorboard/     TensorBoard event files
    summary.json     how the last training session ended

``ntm.training.runs`` opens runs, ``ntm.training.checkpoints`` restores their weights and
``ntm.training.run_writer`` writes them; all three name the files from here.
"""

from __future__ import annotations

from pathlib import Path

from ntm.contract.errors import NtmError

RUNS_ROOT = Path("runs")
CHECKPOINT_DIR = "checkpoints"
AT_TARGET_DIR = "at-target"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TENSORBOARD_DIR = "tensorboard"


class RunError(ValueError, NtmError):
    """A run directory is missing, empty or corrupt; the message says which and why."""
