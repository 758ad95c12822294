"""What ``ntm export --format triton`` writes for Triton's onnxruntime backend.

Three kinds of model entry, each an ONNX file and a ``config.pbtxt`` that Triton takes with
``--strict-model-config`` (the backend completes nothing from the file):

- **dynamic length** (the default): Triton's dynamic batcher with *ragged* inputs, so requests of
  different lengths share one run. The backend concatenates the requests' ``inputs`` into one
  flat tensor and adds ``item_shape`` [batch, 2] (each sequence's time steps and width: a
  ``BATCH_ITEM_SHAPE`` batch input); the model pads them into one batch, runs each group of
  sequences that need the same memory rows (the rows ``ntm serve`` would give it:
  ``ntm.contract.memory_plan``) and returns the probabilities of every real step, flat; the
  backend scatters them back by each request's own shape (``BATCH_SCATTER_WITH_INPUT_SHAPE``).
  A request needs ``inputs`` alone. Attention is not an output: a scattered output can only
  take its variable dims from the input, and a request's attention has N rows of its own.
- **stateful** (``--stateful``): Triton's sequence batcher, ``oldest`` strategy (one slot per
  live sequence, up to ``max_sequences``), implicit state (``state`` -> ``state_out``), the
  START control on ``sequence_start`` and an idle timeout. Each request runs alone
  (``max_batch_size`` 0: dims are whole shapes); ``memory_size`` is optional: without it a
  sequence gets the rows its first request needs, as on ``ntm serve``.
- **fixed length** (``--length T``): every request has exactly T steps (pad and trim on the
  client); plain dynamic batching, attention included.

The LSTM baseline has no memory (``ModelParts``): the same three entries without the
``memory_size`` input, the rows and the attention output; its ragged model runs every sequence
of a batch in one run.

Every entry sets the onnxruntime thread counts and instance count as ``parameters`` a user can
change (``TritonSettings``: what measured best on a 2-core machine, docs/deployment.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import tensorflow as tf

from ntm.contract.metadata import (ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES,
                                   ModelParts)
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.export.signatures import RowsTable
from ntm.model.lstm_baseline import LSTMBaseline
from ntm.model.machine import NTM

ITEM_SHAPE_NAME = "item_shape"  # [batch, 2]: time steps and width of each sequence


@dataclass(frozen=True)
class TritonSettings:
    """Scheduling and threading written into every ``config.pbtxt``."""

    max_batch_size: int = 64  # sequences per run of the dynamic batcher
    max_queue_delay_us: int = 2000  # how long a batch waits to fill (ntm serve's default)
    instances: int = 2  # model instances (runs at once)
    intra_op_threads: int = 1  # onnxruntime threads within one run
    inter_op_threads: int = 1
    max_sequences: int = 1000  # live sequences of a stateful model (ntm serve's default)
    sequence_idle_us: int = 300_000_000  # a sequence idle this long is ended (ntm serve's)


class RaggedModule(tf.Module):
    """A network over a ragged batch, as Triton's dynamic batcher hands it over.

    ``serve(inputs [E], item_shape [batch, 2])``: ``inputs`` holds the sequences' steps one
    after another (E = sum of T_i x in), ``item_shape`` each sequence's (T_i, in) ->
    ``probabilities`` [sum of T_i, out], the sequences' steps one after another.

    Each sequence runs with ``rows.rows_for(T_i)`` memory rows: one run per distinct N, its
    sequences right-padded to the longest among them (the model is causal: padding never
    changes a sequence's own steps). A network without memory (``rows`` None) runs them all in
    one run.
    """

    def __init__(self, model: NTM | LSTMBaseline, rows: RowsTable | None):
        super().__init__(name="ntm_triton")
        self.model = model
        self.rows = rows
        c = model.config
        self.signature = [tf.TensorSpec([None], tf.float32, name=INPUT_NAME),
                          tf.TensorSpec([None, 2], tf.int32, name=ITEM_SHAPE_NAME)]
        self.serve = tf.function(self._serve, input_signature=self.signature)
        self.input_size, self.output_size = c.input_size, c.output_size

    dim_names = {INPUT_NAME: ["elements"], ITEM_SHAPE_NAME: ["batch", None],
                 PROBABILITIES: ["steps", None]}

    def input_defaults(self) -> dict:
        return {}  # Triton's batcher gives both inputs

    def _serve(self, inputs, item_shape):
        lengths = item_shape[:, 0]  # [batch]
        steps = tf.reshape(inputs, [-1, self.input_size])  # [sum T, in]
        longest = tf.reduce_max(lengths)
        valid = tf.range(longest)[None, :] < lengths[:, None]  # [batch, longest]
        first = tf.cumsum(lengths, exclusive=True)  # each sequence's first row in ``steps``
        where = tf.where(valid, first[:, None] + tf.range(longest)[None, :], 0)
        padded = tf.gather(steps, where) * tf.cast(valid, tf.float32)[..., None]
        if self.rows is None:
            probabilities = tf.sigmoid(self.model(padded).logits)
        else:
            probabilities = self._run_by_rows(padded, lengths)
        return {PROBABILITIES: tf.gather_nd(probabilities, tf.where(valid))}

    def _run_by_rows(self, padded, lengths):
        """padded [batch, longest, in] -> probabilities [batch, longest, out], one run per
        memory size."""
        batch, longest = tf.shape(lengths)[0], tf.reduce_max(lengths)
        rows = self.rows.rows_for(lengths)  # [batch]

        def run_group(done, probabilities):
            """One run: the not yet answered sequences with the fewest rows."""
            n = tf.reduce_min(tf.where(done, tf.int32.max, rows))
            group = tf.logical_and(tf.logical_not(done), tf.equal(rows, n))
            members = tf.cast(tf.where(group)[:, 0], tf.int32)
            time_steps = tf.reduce_max(tf.gather(lengths, members))
            out = self.model(tf.gather(padded, members)[:, :time_steps], memory_size=n)
            p = tf.pad(tf.sigmoid(out.logits), [[0, 0], [0, longest - time_steps], [0, 0]])
            return (tf.logical_or(done, group),
                    tf.tensor_scatter_nd_update(probabilities, members[:, None], p))

        _, probabilities = tf.while_loop(
            lambda done, _: tf.logical_not(tf.reduce_all(done)), run_group,
            (tf.zeros([batch], tf.bool), tf.zeros([batch, longest, self.output_size])))
        return probabilities


def stateful_defaults(parts: ModelParts) -> dict:
    """The input defaults of a stateful model for Triton's sequence batcher: the backend lists
    no input that has a default (an initializer) as a model input, so ``sequence_start`` and
    ``state`` get none; an omitted ``memory_size`` (the NTM's) means "the rows the first
    request needs" (0)."""
    import numpy as np

    return {MEMORY_SIZE_NAME: np.array([0], np.int32)} if parts.memory else {}


def prepare_stateful(proto: onnx.ModelProto) -> None:
    """A stateful ONNX model (converted with ``stateful_defaults``) as Triton's sequence
    batcher wants it (in place): a control input's dims must be exactly [1]."""
    for value in proto.graph.input:
        if value.name == START_NAME:
            dim = value.type.tensor_type.shape.dim[0]
            dim.ClearField("dim_param")
            dim.dim_value = 1


def model_operations(library) -> str:
    """The config lines that make the onnxruntime backend register the fused kernel's library
    (``ntm export --kernel fused``) before it loads the model. The path is absolute: the
    backend hands it to dlopen, which would read a relative one against the server's working
    directory; moving the repository means exporting again (or editing this path)."""
    return f'model_operations {{\n  op_library_filename: [ "{library}" ]\n}}\n'


RAGGED = "    allow_ragged_batch: true\n"
OPTIONAL = "    optional: true\n"


def _tensor(name: str, dtype: str, dims: list[int], extra: str = "") -> str:
    return (f'  {{\n    name: "{name}"\n    data_type: {dtype}\n'
            f'    dims: [ {", ".join(str(d) for d in dims)} ]\n{extra}  }}')


def _runtime(settings: TritonSettings) -> str:
    return f'''instance_group [
  {{
    kind: KIND_CPU
    count: {settings.instances}
  }}
]
parameters {{
  key: "intra_op_thread_count"
  value: {{ string_value: "{settings.intra_op_threads}" }}
}}
parameters {{
  key: "inter_op_thread_count"
  value: {{ string_value: "{settings.inter_op_threads}" }}
}}
'''


def ragged_config(name: str, input_size: int, output_size: int,
                  settings: TritonSettings = TritonSettings()) -> str:
    """config.pbtxt of a dynamic-length model (``RaggedModule``)."""
    ragged_input = _tensor(INPUT_NAME, "TYPE_FP32", [-1, input_size], RAGGED)
    return f'''name: "{name}"
backend: "onnxruntime"
max_batch_size: {settings.max_batch_size}
input [
{ragged_input}
]
batch_input [
  {{
    kind: BATCH_ITEM_SHAPE
    target_name: "{ITEM_SHAPE_NAME}"
    data_type: TYPE_INT32
    source_input: "{INPUT_NAME}"
  }}
]
output [
{_tensor(PROBABILITIES, "TYPE_FP32", [-1, output_size])}
]
batch_output [
  {{
    target_name: "{PROBABILITIES}"
    kind: BATCH_SCATTER_WITH_INPUT_SHAPE
    source_input: "{INPUT_NAME}"
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {settings.max_queue_delay_us}
}}
{_runtime(settings)}'''


def _outputs(parts: ModelParts, probabilities: list[int], attention: list[int]) -> str:
    """The output entries: probabilities, and attention where the network has memory."""
    tensors = [_tensor(PROBABILITIES, "TYPE_FP32", probabilities)]
    if parts.attention:
        tensors.append(_tensor(ATTENTION, "TYPE_FP32", attention))
    return ",\n".join(tensors)


def fixed_config(name: str, parts: ModelParts, input_size: int, output_size: int, heads: int,
                 length: int, rows: int | None,
                 settings: TritonSettings = TritonSettings()) -> str:
    """config.pbtxt of a fixed-length model: every request has ``length`` steps (``heads`` and
    ``rows``: the NTM's attention, [length, heads, rows] per request)."""
    outputs = _outputs(parts, [length, output_size], [length, heads, rows])
    return f'''name: "{name}"
backend: "onnxruntime"
max_batch_size: {settings.max_batch_size}
input [
{_tensor(INPUT_NAME, "TYPE_FP32", [length, input_size])}
]
output [
{outputs}
]
dynamic_batching {{
  max_queue_delay_microseconds: {settings.max_queue_delay_us}
}}
{_runtime(settings)}'''


def sequence_config(name: str, parts: ModelParts, input_size: int, output_size: int,
                    heads: int, settings: TritonSettings = TritonSettings()) -> str:
    """config.pbtxt of a stateful model (``prepare_stateful``): Triton keeps each sequence's
    ``state_out`` and feeds it back as the next request's ``state``. The zero initial state
    only gives a first request a tensor: at a start the model builds its own learned initial
    state and never reads it. The NTM also takes an optional ``memory_size``."""
    inputs = [_tensor(INPUT_NAME, "TYPE_FP32", [-1, -1, input_size])]
    if parts.memory:
        inputs.append(_tensor(MEMORY_SIZE_NAME, "TYPE_INT32", [1], OPTIONAL))
    inputs = ",\n".join(inputs)
    outputs = _outputs(parts, [-1, -1, output_size], [-1, -1, heads, -1])
    return f'''name: "{name}"
backend: "onnxruntime"
max_batch_size: 0
input [
{inputs}
]
output [
{outputs}
]
sequence_batching {{
  max_sequence_idle_microseconds: {settings.sequence_idle_us}
  oldest {{
    max_candidate_sequences: {settings.max_sequences}
  }}
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
        dims: [ 1, 1 ]
        zero_data: true
      }}
    }}
  ]
}}
{_runtime(settings)}'''
