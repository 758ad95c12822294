"""Helpers shared by the commands: quiet TensorFlow, one-line errors."""

from __future__ import annotations

import os
import sys

import click


def quiet_tensorflow(threads: int | None = None):
    """Import TensorFlow with its start-up chatter silenced; optionally pin its thread pools.

    One thread each is the fastest setting measured for this small recurrent model on CPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) ignore TF_CPP_MIN_LOG_LEVEL on
        # recent versions; silence file descriptor 2 for the import alone.
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(threads)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process (tests): keep what it has
            pass
    return tf


def fail(message: str) -> None:
    """Stop the command with a one-line error (exit code 1)."""
    raise click.ClickException(message)
