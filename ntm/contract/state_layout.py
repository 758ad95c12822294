"""How a stateful export lays its recurrent state out in one float32 vector per sequence.

A stateful model (``ntm export --stateful``) takes the state a sequence has reached as one
input, ``state`` [batch, S], and returns the state after its last step as ``state_out``
[batch, S], so a sequence can run in several calls (a server keeps ``state_out`` between them,
as Triton's implicit state does). One flat tensor per sequence, whatever the controller, so a
server never needs to know what is inside; its layout, per sequence::

    controller state  (LSTM: h then c, ``controller_size`` each; feedforward: nothing)
    read vectors      read_heads x M
    weightings        heads x N       (read heads first, then write heads)
    memory            N x M

Everything before the weightings has a fixed size; the last two grow with the memory rows N,
so N can be read back from S (``rows_in_state``).

The LSTM baseline has no memory; its state is its layers' (h, c), bottom layer first::

    layer 1: h then c   lstm_units each
    ...
    layer L: h then c

so S = 2 x lstm_layers x lstm_units whatever the input (``baseline_state_size``). NumPy-free and
TensorFlow-free: the export (``ntm.model.state``) and the server both use it.
"""

from __future__ import annotations

from typing import Any, Mapping

STATE_NAME = "state"
STATE_OUT_NAME = "state_out"
# 1 (any non-zero) in any entry: start the sequence from the learned initial state, with N =
# the largest entry of memory_size; 0: go on from ``state`` (N as in it). Default 1.
START_NAME = "sequence_start"


def controller_state_size(model: Mapping[str, Any]) -> int:
    """Floats of controller state per sequence (``model``: a ModelConfig as a dict)."""
    return 2 * model["controller_size"] if model["controller"] == "lstm" else 0


def fixed_state_size(model: Mapping[str, Any]) -> int:
    """Floats per sequence that do not depend on N: controller state and read vectors."""
    return controller_state_size(model) + model["num_read_heads"] * model["memory_width"]


def per_row_state_size(model: Mapping[str, Any]) -> int:
    """Floats per sequence and memory row: one weight per head and the row itself."""
    return model["num_read_heads"] + model["num_write_heads"] + model["memory_width"]


def state_size(model: Mapping[str, Any], rows: int) -> int:
    """S, the floats of the NTM's state per sequence at N = ``rows`` memory rows."""
    return fixed_state_size(model) + rows * per_row_state_size(model)


def rows_in_state(model: Mapping[str, Any], size: int) -> int | None:
    """N for a state of ``size`` floats per sequence, or None when no N gives that size."""
    extra = size - fixed_state_size(model)
    per_row = per_row_state_size(model)
    if extra <= 0 or extra % per_row:
        return None
    return extra // per_row


def baseline_state_size(model: Mapping[str, Any]) -> int:
    """S, the floats of the LSTM baseline's state per sequence: (h, c) of every layer."""
    return 2 * model["lstm_layers"] * model["lstm_units"]
