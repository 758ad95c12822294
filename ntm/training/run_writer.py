"""What a training session leaves in its run directory (``ntm.training.runs`` lists the files).

``RunWriter`` owns every file: config.json when training starts, checkpoints through
``tf.train.CheckpointManager``, metrics.jsonl and TensorBoard events as the loop reports, and
summary.json at the end. The loop (``ntm.training.trainer``) never touches a path.

Only the chief writes the run directory; a multi-worker run's other workers write theirs into a
scratch directory, removed by ``close``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from ntm.training.checkpoints import all_finite, checkpoint_step
from ntm.training.config import save_configs
from ntm.files import write_json_atomic, write_text_atomic
from ntm.training.runs import Run
from ntm.training.layout import (AT_TARGET_DIR, CHECKPOINT_DIR, METRICS_FILE, SUMMARY_FILE,
                                 TENSORBOARD_DIR, RunError)


class RunWriter:
    """Checkpoints, metrics, TensorBoard and summary of one run; ``chief`` False writes into a
    scratch directory instead of ``run.directory``."""

    def __init__(self, run: Run, checkpoint: tf.train.Checkpoint, chief: bool = True):
        self.run_dir = run.directory
        self.out_dir = self.run_dir if chief else Path(tempfile.mkdtemp(prefix="ntm-worker-"))
        self.checkpoint = checkpoint
        self.manager = tf.train.CheckpointManager(
            checkpoint, str(self.out_dir / CHECKPOINT_DIR),
            max_to_keep=run.train_config.keep_checkpoints)
        # The weights alone, at a polishing run's last evaluation that met the target.
        self.at_target = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=checkpoint.model), str(self.out_dir / AT_TARGET_DIR),
            max_to_keep=1)
        self.metrics_path = self.out_dir / METRICS_FILE
        self.events = None

    def restore_run(self) -> str | None:
        """Restore the run directory's latest checkpoint (``--resume``); RunError without one.
        Returns a note when part of the training state was not in it (else None)."""
        latest = tf.train.latest_checkpoint(str(self.run_dir / CHECKPOINT_DIR))
        if latest is None:
            raise RunError(f"--resume: {self.run_dir} has no checkpoint to resume")
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            return None
        except AssertionError:
            pass
        # The weights and counters must match; what a checkpoint may lack starts afresh: the
        # optimiser's slots (a run recovered from an ONNX file has none), and the restart and
        # polish counters (a resumed run may switch those on).
        essential = tf.train.Checkpoint(model=self.checkpoint.model,
                                        state=self.checkpoint.state)
        try:
            essential.restore(latest).assert_existing_objects_matched()
        except AssertionError as err:
            first = str(err).strip().splitlines()[0][:300]
            raise RunError(f"cannot resume {self.run_dir}: checkpoint {latest} does not match "
                           f"the model ({first})") from None
        return (f"resumed from {latest} without part of the training state (the optimiser's, "
                f"or the restart or polish counters: a recovered run, or a setting switched on "
                f"now): that part starts afresh")

    def start(self, run: Run, step: int) -> None:
        """Write config.json, drop metrics past ``step`` (the restored one), open TensorBoard."""
        save_configs(self.out_dir, run.model_config, run.train_config)
        self._truncate_metrics(step)
        self.events = tf.summary.create_file_writer(str(self.out_dir / TENSORBOARD_DIR))

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines past the restored step (written after the last checkpoint), and a
        last line cut short by a crash (SIGKILL mid-write). The rewrite is atomic."""
        if not self.metrics_path.exists():
            return
        keep = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # only a crash mid-write leaves a broken line
            if record.get("step", 0) <= step:
                keep.append(line)
        write_text_atomic(self.metrics_path, "".join(line + "\n" for line in keep))

    def log(self, record: dict) -> None:
        """One metrics.jsonl line, and its numbers as TensorBoard scalars at record["step"]."""
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        with self.events.as_default(step=record["step"]):
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    tf.summary.scalar(key, value)

    @property
    def latest_checkpoint(self) -> str | None:
        return self.manager.latest_checkpoint

    def save(self, step: int, variables) -> str | None:
        """Checkpoint now, unless a weight is non-finite (then keep the last good one)."""
        return _save_finite(self.manager, step, variables)

    def save_at_target(self, step: int, variables) -> str | None:
        """Keep the weights of ``step``, whose evaluation met the target (the previous ones
        kept so are replaced); nothing when a weight is non-finite."""
        return _save_finite(self.at_target, step, variables)

    def restore_at_target(self) -> int | None:
        """Put the weights kept by ``save_at_target`` back into the model; their step (None
        when none were kept)."""
        path = self.at_target.latest_checkpoint
        if path is None:
            return None
        self.at_target.checkpoint.restore(path).assert_existing_objects_matched()
        return checkpoint_step(path)

    def restore_last_good(self) -> str:
        """Go back to the last checkpoint this session can see; its path."""
        self.checkpoint.restore(self.manager.latest_checkpoint)
        return self.manager.latest_checkpoint

    def write_summary(self, summary: dict) -> None:
        write_json_atomic(self.out_dir / SUMMARY_FILE, summary)

    def close(self) -> None:
        """Flush TensorBoard; remove a non-chief worker's scratch directory."""
        if self.events is not None:
            self.events.close()
        if self.out_dir != self.run_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)


def _save_finite(manager: tf.train.CheckpointManager, step: int, variables) -> str | None:
    """``manager`` saves ``step``'s checkpoint unless a weight is non-finite (None then)."""
    if not all_finite(variables):
        return None
    return manager.save(checkpoint_number=step)
