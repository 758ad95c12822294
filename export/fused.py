"""The fused export: one node of the ``ntm_ops`` library (``kernels/``) in place of the Loop.

Same inputs, outputs, metadata and proof as the standard ONNX export (``ntm.export.signatures``);
the graph is one custom node whose inputs are the model's inputs and its weights (initializers),
and whose attributes are the model's configuration and memory buckets. Kinds, by op:

    NTM          dynamic length: (inputs, memory_size) -> (probabilities, attention)
    NTMSequence  stateful: (inputs, memory_size, sequence_start, state)
                 -> (probabilities, attention, state_out)
    NTMRagged    Triton's ragged batches: (inputs [E], item_shape [batch, 2]) -> probabilities

A fixed-length export has no fused twin: unrolling exists to spare onnxruntime the Loop, which
the kernel has no more of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ntm.contract.metadata import ATTENTION, INPUT_NAME, MEMORY_SIZE_NAME, PROBABILITIES
from ntm.contract.state_layout import START_NAME, STATE_NAME, STATE_OUT_NAME
from ntm.contract.kernel_library import DOMAIN, OP_NAMES

if TYPE_CHECKING:  # the graph itself needs neither TensorFlow nor the model
    from ntm.export.signatures import RowsTable
    from ntm.model.machine import NTM

ITEM_SHAPE_NAME = "item_shape"  # ntm.export.triton's batch input (kept equal by a test)

OP_VERSION = 1  # the ops' contract (kernels/ntm_ops.cc ntm_ops_version)
KERNEL_NAME = "fused"
WEIGHT_NAMES = ("controller_kernel", "controller_bias", "initial_h", "initial_c", "head_kernel",
                "head_bias", "output_kernel", "output_bias", "initial_reads",
                "initial_weight_logits", "initial_memory")


def model_weights(model: NTM) -> dict[str, np.ndarray]:
    """The NTM's variables in the op's order and shapes (float32). A feed-forward controller
    has no initial (h, c), a constant initial memory no initial_memory: those are empty."""
    cell = model.cell
    controller = cell.controller
    lstm = model.config.controller == "lstm"
    empty = np.zeros([0], np.float32)
    values = (controller.kernel, controller.bias,
              controller.initial_h if lstm else empty, controller.initial_c if lstm else empty,
              cell.head_kernel, cell.head_bias, cell.output_kernel, cell.output_bias,
              cell.initial_reads, cell.initial_weight_logits,
              empty if cell.initial_memory is None else cell.initial_memory)
    return {name: np.asarray(v, np.float32) for name, v in zip(WEIGHT_NAMES, values)}


def attributes(config: dict, rows: RowsTable, max_memory_size: int) -> dict:
    """The node's attributes: the architecture (``ModelConfig`` as a dict) and memory buckets."""
    return {
        "memory_width": config["memory_width"],
        "lstm": int(config["controller"] == "lstm"),
        "controller_size": config["controller_size"],
        "read_heads": config["num_read_heads"],
        "write_heads": config["num_write_heads"],
        "shift_range": config["shift_range"],
        "clip_value": float(config["clip_value"]),
        "memory_init": float(config["memory_init"]),
        "grow_logit_margin": float(config["grow_logit_margin"]),
        "grow_strength_power": float(config["grow_strength_power"]),
        "max_memory_size": int(max(max_memory_size, rows.buckets[-1])),
        "buckets": [int(b) for b in rows.buckets],
        "longest": [int(n) for n in rows.longest],
    }


def fused_graph(weights: dict[str, np.ndarray], config: dict, rows: RowsTable,
                max_memory_size: int, kind: str, opset: int,
                defaults: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """The fused ONNX model of ``kind`` ("dynamic", "stateful" or "ragged").

    ``defaults``: initializers for inputs a caller may leave out (as the standard export's
    ``input_defaults``)."""
    c = config
    heads = c["num_read_heads"] + c["num_write_heads"]
    floats, ints = TensorProto.FLOAT, TensorProto.INT32
    if kind == "ragged":
        inputs = [helper.make_tensor_value_info(INPUT_NAME, floats, ["elements"]),
                  helper.make_tensor_value_info(ITEM_SHAPE_NAME, ints, ["batch", 2])]
        outputs = [helper.make_tensor_value_info(PROBABILITIES, floats,
                                                 ["steps", c["output_size"]])]
    else:
        inputs = [helper.make_tensor_value_info(INPUT_NAME, floats,
                                                ["batch", "time", c["input_size"]]),
                  helper.make_tensor_value_info(MEMORY_SIZE_NAME, ints, ["memory_sizes"])]
        outputs = [
            helper.make_tensor_value_info(PROBABILITIES, floats,
                                          ["batch", "time", c["output_size"]]),
            helper.make_tensor_value_info(ATTENTION, floats, ["batch", "time", heads, "rows"])]
        if kind == "stateful":
            inputs += [helper.make_tensor_value_info(START_NAME, ints, ["starts"]),
                       helper.make_tensor_value_info(STATE_NAME, floats,
                                                     ["state_batch", "state_size"])]
            outputs.append(helper.make_tensor_value_info(STATE_OUT_NAME, floats,
                                                         ["batch", "state_out_size"]))
    node = helper.make_node(
        OP_NAMES[kind], [i.name for i in inputs] + list(WEIGHT_NAMES),
        [o.name for o in outputs], name="ntm", domain=DOMAIN,
        **attributes(c, rows, max_memory_size))
    initializers = [numpy_helper.from_array(weights[n], n) for n in WEIGHT_NAMES]
    initializers += [numpy_helper.from_array(v, n) for n, v in (defaults or {}).items()]
    graph = helper.make_graph([node], "ntm_fused", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(DOMAIN, OP_VERSION)],
                              producer_name="ntm")
    model.ir_version = 8  # onnxruntime 1.20 reads up to 10; 8 is what opset 17 needs
    return model


def session_options(intra_op_threads: int = 1):
    """onnxruntime SessionOptions with the library registered (KernelUnavailable if it is not
    built or does not load)."""
    import onnxruntime as ort

    from ntm.contract.kernel_library import register

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = 3
    register(options)
    return options
