"""The metadata every exported ONNX model carries (``metadata_props``), TensorFlow-free.

Each key holds a JSON document, so the serving side can rebuild the task codec and check the
model from the ONNX file alone, with no side files:

    ntm.task      task name, widths, training ranges, task parameters (ntm.contract.tasks.Task.metadata)
    ntm.model     the ModelConfig (memory size, heads, controller...)
    ntm.training  step, sequences seen, held-out bits/seq at export, wall seconds
    ntm.export    mode ("dynamic" or "fixed"), fixed length, input/output names, head layout,
                  memory: the rows a call may use (see MEMORY_SIZE_NAME)
    ntm.versions  ntm, tensorflow, tf2onnx, onnx, opset
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
