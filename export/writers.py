"""Writers for the three export formats, each into a temporary path first.

Nothing is moved over an existing export until it has been verified (see ``ntm.export.exporter``),
so a failed export never destroys a good one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import tensorflow as tf

import numpy as np
from onnx import numpy_helper

from ntm.contract.metadata import ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.export.signatures import ExportModule


def write_savedmodel(module: ExportModule, path: Path) -> None:
    """A SavedModel whose ``serving_default`` maps ``inputs`` (and, for a dynamic-length model,
    ``memory_size``) to probabilities and attention."""
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def convert_to_onnx(module: ExportModule, opset: int) -> onnx.ModelProto:
    """tf2onnx conversion of the serving function (not Keras: its from_keras breaks on Keras 3).

    Batch and time axes get symbolic names ``batch`` and ``time``, the memory axis ``rows``. A
    dynamic model's ``memory_size`` input gets a default (an initializer of the same name): the
    trained N, so a caller that sends only ``inputs`` runs the model as it was trained.
    The Loop body is then made leaner by ``ntm.export.onnx_rewrite`` (the export proof checks
    the result against TensorFlow like any other conversion).
    """
    import tf2onnx

    from ntm.export.onnx_rewrite import rewrite

    model_proto, _ = tf2onnx.convert.from_function(
        module.serve, input_signature=module.signature, opset=opset)
    rewrite(model_proto)  # fewer nodes per time step (issue 14); proven with the rest
    names = {INPUT_NAME: ["batch", "time", None], PROBABILITIES: ["batch", "time", None, None],
             ATTENTION: ["batch", "time", None, "rows"], MEMORY_SIZE_NAME: ["memory_sizes"],
             START_NAME: ["starts"], STATE_NAME: ["state_batch", "state_size"],
             STATE_OUT_NAME: ["batch", "state_out_size"]}
    for value in list(model_proto.graph.input) + list(model_proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names.get(value.name, [])):
            if name and not dim.HasField("dim_value"):
                dim.dim_param = name
    defaults = {}
    if module.length is None:
        defaults[MEMORY_SIZE_NAME] = np.array([module.model.config.memory_size], np.int32)
    if module.stateful:  # start afresh: a caller that knows nothing of sequences needs neither
        defaults[START_NAME] = np.array([1], np.int32)
        defaults[STATE_NAME] = np.zeros([1, 0], np.float32)
    for name, value in defaults.items():
        model_proto.graph.initializer.append(numpy_helper.from_array(value, name))
    return model_proto


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` entries named in ``props``."""
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def triton_config(name: str, input_size: int, output_size: int, heads: int,
                  memory_size: int | None, fixed_length: int | None, max_batch_size: int = 64,
                  max_queue_delay_us: int = 1000, state_size: int | None = None,
                  sequence_idle_us: int = 60_000_000) -> str:
    """config.pbtxt for Triton's onnxruntime backend (-1 = any size).

    memory_size None: a dynamic model; its optional ``memory_size`` input is one INT32 per
    request (Triton stacks them into [batch]; the model uses the largest) and the attention's
    row axis is -1. An int: the fixed rows of a fixed-length model.

    state_size (a stateful export; its state per sequence at the trained rows): Triton's
    sequence batcher with implicit state instead of the dynamic batcher. Each request is one
    step of its sequence (``max_batch_size`` 0: dims are whole shapes, a request's batch is its
    own), the START control drives ``sequence_start``, and Triton keeps ``state_out`` as the
    next request's ``state``. The zero initial state only gives the first request a tensor: at
    a start the model builds its own learned initial state and never reads it.
    """
    t = fixed_length if fixed_length is not None else -1
    rows = memory_size if memory_size is not None else -1
    batch = "" if state_size is None else "-1, "  # no Triton batching: the batch axis is ours
    size_dims = "dims: [ 1 ]\n    reshape: { shape: [ ] }" if state_size is None \
        else "dims: [ -1 ]"
    memory_input = "" if memory_size is not None else f''',
  {{
    name: "{MEMORY_SIZE_NAME}"
    data_type: TYPE_INT32
    {size_dims}
    optional: true
  }}'''
    if state_size is None:
        scheduling = f'''dynamic_batching {{
  max_queue_delay_microseconds: {max_queue_delay_us}
}}'''
    else:
        max_batch_size = 0
        scheduling = f'''sequence_batching {{
  max_sequence_idle_microseconds: {sequence_idle_us}
  control_input [
    {{
      name: "{START_NAME}"
      control [
        {{
          kind: CONTROL_SEQUENCE_START
          int32_false_true: [ 0, 1 ]
        }}
      ]
    }}
  ]
  state [
    {{
      input_name: "{STATE_NAME}"
      output_name: "{STATE_OUT_NAME}"
      data_type: TYPE_FP32
      dims: [ -1, -1 ]
      initial_state: {{
        name: "unused_at_start"
        data_type: TYPE_FP32
        dims: [ 1, {state_size} ]
        zero_data: true
      }}
    }}
  ]
}}'''
    return f'''name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {batch}{t}, {input_size} ]
  }}{memory_input}
]
output [
  {{
    name: "{PROBABILITIES}"
    data_type: TYPE_FP32
    dims: [ {batch}{t}, {output_size} ]
  }},
  {{
    name: "{ATTENTION}"
    data_type: TYPE_FP32
    dims: [ {batch}{t}, {heads}, {rows} ]
  }}
]
{scheduling}
instance_group [
  {{
    kind: KIND_CPU
    count: 1
  }}
]
'''


def replace_path(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``, replacing a file or directory that is there."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.replace(final)
