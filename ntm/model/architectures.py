"""The network a ``ModelConfig`` names (``architecture``), and what training and evaluation need
of any of them (``SequenceModel``).

    "ntm"   ``ntm.model.machine.NTM``                 memory, heads, weightings
    "lstm"  ``ntm.model.lstm_baseline.LSTMBaseline``  the paper's baseline, no memory
"""

from __future__ import annotations

from typing import Protocol, Sequence

import tensorflow as tf

from ntm.model.config import ModelConfig
from ntm.model.lstm_baseline import LSTMBaseline
from ntm.model.machine import NTM


class Logits(Protocol):
    logits: tf.Tensor  # [batch, time, output_size]


class SequenceModel(Protocol):
    """A network over [batch, time, input_size] inputs that training, checkpoints and
    evaluation handle alike. What only the NTM has (memory rows, weightings, ``cell``) is
    asked for where ``config.has_memory`` says it is there."""

    config: ModelConfig

    @property
    def trainable_variables(self) -> Sequence[tf.Variable]: ...

    def __call__(self, inputs: tf.Tensor) -> Logits: ...


def build_model(config: ModelConfig, seed: int = 0) -> NTM | LSTMBaseline:
    """The network ``config.architecture`` names, its weights initialised from ``seed``."""
    if config.has_memory:
        return NTM(config, seed=seed)
    return LSTMBaseline(config, seed=seed)
