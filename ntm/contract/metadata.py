"""The metadata every exported ONNX model carries (``metadata_props``), TensorFlow-free.

Each key holds a JSON document, so the serving side can rebuild the task codec and check the
model from the ONNX file alone, with no side files:

    ntm.task      task name, widths, training ranges, task parameters (ntm.contract.tasks.Task.metadata)
    ntm.model     the ModelConfig (memory size, heads, controller...)
    ntm.training  step, sequences seen, held-out bits/seq at export, wall seconds
    ntm.export    mode ("dynamic" or "fixed"), fixed length, input/output names, head layout,
                  memory: the rows a call may use (see MEMORY_SIZE_NAME); heads and memory are
                  null for a network without memory (``ModelParts``)
    ntm.versions  ntm, tensorflow, tf2onnx, onnx, opset
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ntm.contract.errors import NtmError

# Where `ntm export` writes by default and `ntm serve`/`ntm predict`/`ntm.load` look for
# exports by name (relative to the working directory).
EXPORTS_ROOT = Path("exports")
KEYS = ("ntm.task", "ntm.model", "ntm.training", "ntm.export", "ntm.versions")
INPUT_NAME = "inputs"
# Dynamic exports take the number of memory rows N per call through this optional int32 input
# (shape [k], the largest entry is used; its default is the trained N). Exports older than this
# input, and fixed-length exports, run at the N their metadata names.
MEMORY_SIZE_NAME = "memory_size"
PROBABILITIES = "probabilities"
ATTENTION = "attention"


def takes_memory_size(session) -> bool:
    """True when an onnxruntime session's model has the ``memory_size`` input (onnxruntime
    lists an input with a default among the overridable initializers, not the inputs)."""
    names = [i.name for i in session.get_inputs()]
    names += [i.name for i in session.get_overridable_initializers()]
    return MEMORY_SIZE_NAME in names


@dataclass(frozen=True)
class ModelParts:
    """What an exported model has besides ``inputs`` -> ``probabilities``, by the network in it
    (``ntm.model``'s ``architecture``)::

        network            memory rows                         attention output
        the NTM            per call (input memory_size), or    [batch, time, heads, N]
                           fixed at export
        the LSTM baseline  none                                none

    A stateful export of either carries its state as one flat vector per sequence
    (``ntm.contract.state_layout``). Export, server and clients ask this, never the
    architecture's name.
    """

    memory: bool

    @classmethod
    def of(cls, model: Mapping[str, Any]) -> "ModelParts":
        """The parts of a model whose ModelConfig (as a dict) is ``model``; a config written
        before the baseline existed names no architecture and is an NTM."""
        return cls(memory=model.get("architecture", "ntm") == "ntm")

    @property
    def attention(self) -> bool:
        """The heads' weightings over the memory rows: only a network with memory has them."""
        return self.memory

    @property
    def network(self) -> str:
        """The network's name, as errors say it."""
        return "the NTM" if self.memory else "the LSTM baseline"

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model's outputs (a stateful model's ``state_out`` aside)."""
        return (PROBABILITIES, ATTENTION) if self.attention else (PROBABILITIES,)

    @property
    def optional_inputs(self) -> tuple[str, ...]:
        """What a caller may send beside ``inputs``: a dynamic NTM's ``memory_size``."""
        return (MEMORY_SIZE_NAME,) if self.memory else ()

    def model_name(self, task: str) -> str:
        """The name a model of ``task`` goes by unless it is given one: the task's for the NTM,
        TASK-lstm for the LSTM baseline (so the two live side by side under ``exports/`` and on
        one server)."""
        return task if self.memory else f"{task}-lstm"


class MetadataError(ValueError, NtmError):
    """An ONNX model lacks ntm metadata or holds a malformed entry."""


def encode(entries: dict[str, Any]) -> dict[str, str]:
    """{key: JSON-able} -> {key: JSON string}, for ``metadata_props``."""
    missing = [k for k in KEYS if k not in entries]
    if missing:
        raise MetadataError(f"metadata lacks {missing}")
    return {k: json.dumps(v, sort_keys=True) for k, v in entries.items()}


def decode(props: dict[str, str], source: str = "model") -> dict[str, Any]:
    """{key: JSON string} -> {key: value}; MetadataError naming ``source`` when not ours."""
    missing = [k for k in KEYS if k not in props]
    if missing:
        raise MetadataError(f"{source} has no ntm metadata (missing {', '.join(missing)}); "
                            f"export it with `ntm export`")
    out = {}
    for key in KEYS:
        try:
            out[key] = json.loads(props[key])
        except json.JSONDecodeError as err:
            raise MetadataError(f"{source}: metadata {key} is not valid JSON: {err}") from None
    return out
