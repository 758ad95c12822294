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
    # oneDNN's kernels are slower for this small recurrent model (measured: 22 vs 27 ms per
    # training step at batch 1, 7 vs 13 ms per 41-step forward pass) and drift further from
    # onnxruntime's results; off unless the user asks for it.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
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


class WordOrCount(click.ParamType):
    """A keyword (converted to None) or a positive integer: ``dynamic|N``, ``auto|N``.

    ``unit`` names what N counts, for the message when it is below 1.
    """

    def __init__(self, word: str, unit: str, why_positive: str):
        self.word = word
        self.name = f"{word}|N"
        self.unit = unit
        self.why_positive = why_positive

    def convert(self, value, param, ctx):
        if value is None or value == self.word:
            return None
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither '{self.word}' nor an integer", param, ctx)
        if n < 1:
            self.fail(f"{n} {self.unit}: {self.why_positive}", param, ctx)
        return n
