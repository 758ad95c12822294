"""Writers for the export formats, each into a temporary path first.

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
from ntm.export.triton import ITEM_SHAPE_NAME, RaggedModule


def write_savedmodel(module: ExportModule, path: Path) -> None:
    """A SavedModel with TF Serving's signatures (``ExportModule.savedmodel_signatures``):
    ``serving_default`` maps ``inputs`` alone to probabilities and attention."""
    tf.saved_model.save(module, str(path), signatures=module.savedmodel_signatures())


# Symbolic names of the variable axes, by input or output name.
DIM_NAMES = {INPUT_NAME: ["batch", "time", None], PROBABILITIES: ["batch", "time", None, None],
             ATTENTION: ["batch", "time", None, "rows"], MEMORY_SIZE_NAME: ["memory_sizes"],
             START_NAME: ["starts"], STATE_NAME: ["state_batch", "state_size"],
             STATE_OUT_NAME: ["batch", "state_out_size"]}
RAGGED_DIM_NAMES = {INPUT_NAME: ["elements"], ITEM_SHAPE_NAME: ["batch", None],
                    PROBABILITIES: ["steps", None]}


def convert_to_onnx(module: ExportModule | RaggedModule, opset: int) -> onnx.ModelProto:
    """tf2onnx conversion of the serving function (not Keras: its from_keras breaks on Keras 3).

    Variable axes get symbolic names (``DIM_NAMES``: ``batch``, ``time``, ``rows``...). A
    dynamic model's ``memory_size`` input gets a default (an initializer of the same name): the
    trained N, so a caller that sends only ``inputs`` runs the model as it was trained; a
    stateful one's ``sequence_start`` and ``state`` too (start afresh).
    The Loop bodies are then made leaner by ``ntm.export.onnx_rewrite`` (the export proof checks
    the result against TensorFlow like any other conversion).
    """
    import tf2onnx

    from ntm.export.onnx_rewrite import rewrite

    model_proto, _ = tf2onnx.convert.from_function(
        module.serve, input_signature=module.signature, opset=opset)
    rewrite(model_proto)
    ragged = isinstance(module, RaggedModule)
    names = RAGGED_DIM_NAMES if ragged else DIM_NAMES
    for value in list(model_proto.graph.input) + list(model_proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, names.get(value.name, [])):
            if name and not dim.HasField("dim_value"):
                dim.dim_param = name
    defaults = {}
    if not ragged and module.length is None:
        defaults[MEMORY_SIZE_NAME] = np.array([module.model.config.memory_size], np.int32)
    if not ragged and module.stateful:  # a caller that knows nothing of sequences needs neither
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
