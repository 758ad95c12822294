"""Rebuild a training run from an ONNX model that ``ntm export`` wrote: weights, config, counters.

    python -m ntm.export.recover ntm/pretrained/copy.onnx runs/recovered-copy

The bundled models ship as ONNX files only (run directories are not committed). To re-export
one with a newer exporter while keeping its weights exactly, its TensorFlow variables are read
back from the ONNX initializers. Each variable is found by its shape, which the model config in
the file's metadata fixes; the learned initial weighting is stored as its softmax (tf2onnx folds
it), so its logits are recovered as log-weights, equal to the trained logits up to a constant per
head (softmax and the padding rule of ``ntm.model.cell.extend_initial_logits`` do not see it). Where
two variables share a shape (the LSTM's initial h and c), every assignment is tried and the one
whose TensorFlow outputs match the ONNX model's is kept. The rebuilt model must match the ONNX
model to ``MATCH_TOLERANCE`` on fresh task inputs, or nothing is written.

The run directory holds config.json, one checkpoint (weights and the training counters from the
metadata: step, sequences, wall time, held-out bits/seq) and summary.json. It has no optimiser
state: ``ntm evaluate`` and ``ntm export`` work on it as on the original run; a resumed
training would start the optimiser's moments afresh.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np
import onnx
import tensorflow as tf
from onnx import numpy_helper

from ntm.contract import metadata as meta
from ntm.export.verify import TOLERANCE
from ntm.contract.errors import NtmError
from ntm.training.checkpoints import TrainingState
from ntm.model.config import ModelConfig
from ntm.training.config import TrainConfig, save_configs
from ntm.model.machine import NTM
from ntm.files import write_json_atomic
from ntm.training.layout import CHECKPOINT_DIR, SUMMARY_FILE
from ntm.contract.tasks import Difficulty, task_from_metadata

# The export's own bar (``ntm.export.verify.TOLERANCE``): TensorFlow and onnxruntime sum in
# different orders, and in a large model (priority sort's 512-unit controller and 16 heads) that
# alone moves the probabilities by more than 1e-5; a wrong assignment of the weights differs by
# orders of magnitude more.
MATCH_TOLERANCE = TOLERANCE


class RecoveryError(RuntimeError, NtmError):
    """The ONNX model's weights cannot be mapped back onto the NTM; the message says why."""


def float_initializers(graph: onnx.GraphProto) -> list[tuple[str, np.ndarray]]:
    """Every float32 initializer of ``graph`` and its subgraphs (Loop bodies), as arrays."""
    out = [(t.name, numpy_helper.to_array(t)) for t in graph.initializer
           if t.data_type == onnx.TensorProto.FLOAT]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                out += float_initializers(attribute.g)
    return out


def variable_shapes(model: NTM, grows: bool = False) -> dict[str, tuple[int, ...]]:
    """{variable path: the shape its value has in an exported graph}.

    Paths name the model's variables (``cell.head_kernel``...); the initial controller state and
    read vectors carry their batch axis [1, ...]. The initial weighting is the logits themselves
    [heads, N] in a model whose memory grows (they are padded for the rows of each call before
    the softmax), else its folded form [1, heads, N] (softmax, batch axis added).
    """
    cell = model.cell
    shapes = {
        "cell.controller.kernel": tuple(cell.controller.kernel.shape),
        "cell.controller.bias": tuple(cell.controller.bias.shape),
        "cell.head_kernel": tuple(cell.head_kernel.shape),
        "cell.head_bias": tuple(cell.head_bias.shape),
        "cell.output_kernel": tuple(cell.output_kernel.shape),
        "cell.output_bias": tuple(cell.output_bias.shape),
        "cell.initial_reads": (1, *cell.initial_reads.shape),
        "cell.initial_weight_logits": ((() if grows else (1,))
                                       + tuple(cell.initial_weight_logits.shape)),
    }
    if cell.initial_memory is not None:  # [N0, M] as the variable, whether it grows or not
        shapes["cell.initial_memory"] = tuple(cell.initial_memory.shape)
    if hasattr(cell.controller, "initial_h"):
        shapes["cell.controller.initial_h"] = (1, *cell.controller.initial_h.shape)
        shapes["cell.controller.initial_c"] = (1, *cell.controller.initial_c.shape)
    return shapes


def candidate_assignments(shapes: dict[str, tuple[int, ...]],
                          arrays: list[tuple[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Every way to give each variable an initializer of its shape (one each, none reused).
    A folded constant can share a variable's shape (in a small model, one as wide as the
    output): then each is tried, and the comparison with the ONNX model decides."""
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for path, shape in shapes.items():
        by_shape.setdefault(shape, []).append(path)
    choices = []
    for shape, paths in by_shape.items():
        found = [a for _, a in arrays if a.shape == shape]
        if len(found) < len(paths):
            raise RecoveryError(f"expected {len(paths)} initializer(s) of shape {list(shape)} "
                                f"for {', '.join(paths)}, found {len(found)}: not a model "
                                f"exported by this project, or a different architecture")
        choices.append([dict(zip(paths, perm))
                         for perm in itertools.permutations(found, len(paths))])
    return [dict(kv for part in combo for kv in part.items())
            for combo in itertools.product(*choices)]


def assign(model: NTM, values: dict[str, np.ndarray]) -> None:
    """Set the model's variables from ``values`` (shapes as in ``variable_shapes``)."""
    for path, value in values.items():
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part)
        if path == "cell.initial_weight_logits" and value.ndim == 3:  # the softmax, folded
            value = np.log(np.maximum(value[0], np.finfo(np.float32).tiny))
        elif value.shape != tuple(obj.shape):
            value = value[0]
        obj.assign(value.astype(np.float32))


def onnx_forward(proto: onnx.ModelProto):
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda x: session.run([meta.PROBABILITIES], {meta.INPUT_NAME: x})[0]


def check_points(task) -> list[np.ndarray]:
    """Fresh inputs at the shortest and the longest trained difficulty (inside the training
    range: beyond it a model can be chaotic, and two correct engines then differ by more)."""
    lo, hi = task.train_lengths
    repeats = task.train_repeats or (None, None)
    rng = np.random.default_rng(7)
    return [task.fixed_batch(rng, 4, Difficulty(lo, repeats[0])).inputs,
            task.fixed_batch(rng, 4, Difficulty(hi, repeats[1])).inputs]


def recover(onnx_path: Path, run_dir: Path) -> float:
    """Write a run directory rebuilt from ``onnx_path``; returns the largest difference between
    the rebuilt TensorFlow model and the ONNX model on fresh inputs."""
    proto = onnx.load(str(onnx_path))
    entries = meta.decode({p.key: p.value for p in proto.metadata_props}, str(onnx_path))
    if entries["ntm.export"].get("mode") != "dynamic":
        raise RecoveryError(f"{onnx_path} is a fixed-length export; recover from a dynamic one")
    model_config = ModelConfig.from_dict(entries["ntm.model"])
    training = entries["ntm.training"]
    train_config = TrainConfig.from_dict(training["config"])
    task = task_from_metadata(entries["ntm.task"])
    model = NTM(model_config, seed=train_config.seed)
    reference = onnx_forward(proto)
    inputs = check_points(task)
    expected = [reference(x) for x in inputs]
    best, best_diff = None, np.inf
    grows = bool((entries["ntm.export"].get("memory") or {}).get("input"))
    for values in candidate_assignments(variable_shapes(model, grows),
                                        float_initializers(proto.graph)):
        assign(model, values)
        diff = max(float(np.abs(tf.sigmoid(model(tf.constant(x)).logits).numpy() - y).max())
                   for x, y in zip(inputs, expected))
        if diff < best_diff:
            best, best_diff = values, diff
    if best is None or best_diff > MATCH_TOLERANCE:
        raise RecoveryError(f"no assignment of {onnx_path}'s initializers reproduces it "
                            f"(closest differs by {best_diff:.3g}); nothing was written")
    assign(model, best)
    state = TrainingState()
    state.step.assign(int(training["step"]))
    state.sequences.assign(int(training["sequences"]))
    state.elapsed.assign(float(training["elapsed_seconds"]))
    state.last_eval.assign(float(training["heldout_bits_per_seq"]))
    save_configs(run_dir, model_config, train_config)
    checkpoint = tf.train.Checkpoint(model=model, state=state)
    tf.train.CheckpointManager(checkpoint, str(run_dir / CHECKPOINT_DIR), max_to_keep=1).save(
        checkpoint_number=int(training["step"]))
    write_json_atomic(run_dir / SUMMARY_FILE, {
        "stopped": training.get("stopped"), "recovered_from": str(onnx_path),
        "recovery_max_abs_diff": best_diff})
    return best_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx_file", type=Path)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    diff = recover(args.onnx_file, args.run_dir)
    print(f"recovered {args.onnx_file} into {args.run_dir}: the rebuilt model matches it "
          f"within {diff:.2e}")


if __name__ == "__main__":
    main()
