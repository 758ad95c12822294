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

from ntm.export.signatures import ExportModule
from ntm.export.triton import RaggedModule


def write_savedmodel(module: ExportModule, path: Path) -> None:
    """A SavedModel with TF Serving's signatures (``ExportModule.savedmodel_signatures``):
    ``serving_default`` maps ``inputs`` alone to probabilities and attention."""
    tf.saved_model.save(module, str(path), signatures=module.savedmodel_signatures())


def convert_to_onnx(module: ExportModule | RaggedModule, opset: int,
                    defaults: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """tf2onnx conversion of the serving function (not Keras: its from_keras breaks on Keras 3).

    Variable axes get the module's symbolic names (``dim_names``: ``batch``, ``time``,
    ``rows``...); inputs get ``defaults`` [the module's ``input_defaults()``] as initializers of
    the same names, so a caller may leave them out. The Loop bodies are then made leaner by
    ``ntm.export.onnx_rewrite`` (the export proof checks the result against TensorFlow like any
    other conversion).
    """
    import tf2onnx

    from ntm.export.onnx_rewrite import rewrite

    model_proto, _ = tf2onnx.convert.from_function(
        module.serve, input_signature=module.signature, opset=opset)
    rewrite(model_proto)
    for value in list(model_proto.graph.input) + list(model_proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, module.dim_names.get(value.name, [])):
            if name and not dim.HasField("dim_value"):
                dim.dim_param = name
    defaults = module.input_defaults() if defaults is None else defaults
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
