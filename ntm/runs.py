"""Where training runs live on disk (no TensorFlow here).

A run directory holds:
    config.json      model + training configuration (ntm.config)
    checkpoints/     tf.train.CheckpointManager files
    metrics.jsonl    one JSON object per logged step / evaluation
    tensorboard/     TensorBoard event files
    summary.json     how the last training session ended
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ntm.config import CONFIG_FILE

RUNS_ROOT = Path("runs")
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
TENSORBOARD_DIR = "tensorboard"


class RunError(ValueError):
    """A run directory is missing, empty or corrupt; the message says which and why."""


def default_run_dir(task: str) -> Path:
    return RUNS_ROOT / task


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_DIR / "checkpoint").is_file()


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The run under ``root`` whose checkpoint was written last."""
    candidates = [p.parent.parent for p in Path(root).glob(f"*/{CHECKPOINT_DIR}/checkpoint")]
    if not candidates:
        raise RunError(f"no training run with a checkpoint under {root}/; "
                       f"train one first with: ntm train --task copy")
    return max(candidates, key=lambda p: (p / CHECKPOINT_DIR / "checkpoint").stat().st_mtime)


def check_run_dir(run_dir: Path) -> Path:
    """Raise RunError unless ``run_dir`` holds a config and a checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} has no {CONFIG_FILE}: not a training run directory")
    if not has_checkpoint(run_dir):
        raise RunError(f"{run_dir} has no checkpoint (expected {run_dir / CHECKPOINT_DIR}/)")
    return run_dir


def read_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and a rename: never a half-written file."""
    write_text_atomic(path, json.dumps(data, indent=2))


def write_text_atomic(path: Path, text: str) -> None:
    """Write text through a temporary file, flushed to disk, and a rename: a crash leaves
    either the old file or the new one, never a half-written one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
