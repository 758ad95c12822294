"""Bad input to the fused kernel gets an onnxruntime error that names what is wrong (never a
crash or a hang), and Triton's ragged batches run as their sequences one by one."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from ntm.export.fused import WEIGHT_NAMES, fused_graph
from ntm.serving.models import bundled_models, fused_twin
from tests.kernel.conftest import session, task_inputs


def rebuilt_proto(kind: str, initial_memory: np.ndarray | None = None, **changes):
    """The bundled copy twin's weights and attributes as a fused ONNX model of ``kind``,
    with ``initial_memory`` if given (else a constant memory, as the twin has)."""
    twin = onnx.load(str(fused_twin(bundled_models()["copy"])))
    weights = {i.name: numpy_helper.to_array(i) for i in twin.graph.initializer
               if i.name in WEIGHT_NAMES}
    weights["initial_memory"] = (np.zeros([0], np.float32) if initial_memory is None
                                 else initial_memory)
    node = twin.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    config = {"memory_width": attrs["memory_width"],
              "controller": "lstm" if attrs["lstm"] else "feedforward",
              "controller_size": attrs["controller_size"], "num_read_heads": attrs["read_heads"],
              "num_write_heads": attrs["write_heads"], "shift_range": attrs["shift_range"],
              "clip_value": attrs["clip_value"], "memory_init": attrs["memory_init"],
              "grow_logit_margin": attrs["grow_logit_margin"],
              "grow_strength_power": attrs["grow_strength_power"], "input_size": 9,
              "output_size": 8, **changes}
    kept = [i for i, b in enumerate(attrs["buckets"]) if b <= 2048]  # up to 2048 rows
    rows = SimpleNamespace(buckets=[attrs["buckets"][i] for i in kept],
                           longest=[attrs["longest"][i] for i in kept])
    return fused_graph(weights, config, rows, 2048, kind, 17)


def rebuilt(kind: str, **changes):
    return session(rebuilt_proto(kind, **changes).SerializeToString(), True)


@pytest.fixture(scope="module")
def dynamic(kernel_library):
    return rebuilt("dynamic")


@pytest.fixture(scope="module")
def stateful(kernel_library):
    return rebuilt("stateful")


@pytest.fixture(scope="module")
def ragged(kernel_library):
    return rebuilt("ragged")


def refused(sess, feeds, words: str, outputs=("probabilities",), by_kernel: bool = True):
    """``by_kernel``: the op's own check (its messages start "ntm_ops:"), else onnxruntime's
    check of the graph's declared shapes, which comes first."""
    with pytest.raises(Exception) as caught:
        sess.run(list(outputs), feeds)
    message = str(caught.value)
    assert words in message and ("ntm_ops" in message) == by_kernel, message


def x(batch=1, time=5, width=9):
    return np.zeros([batch, time, width], np.float32)


def rows(n):
    return np.array([n], np.int32)


def test_wrong_feature_width(dynamic):
    refused(dynamic, {"inputs": x(width=7), "memory_size": rows(128)},
            "input: inputs for the following indices\n index: 2 Got: 7 Expected: 9",
            by_kernel=False)


def test_an_empty_batch_and_no_time_steps(dynamic):
    refused(dynamic, {"inputs": x(batch=0), "memory_size": rows(128)}, "empty batch")
    refused(dynamic, {"inputs": x(time=0), "memory_size": rows(128)}, "no time steps")


def test_nan_and_infinity(dynamic):
    for bad in (np.nan, np.inf):
        inputs = x()
        inputs[0, 2, 3] = bad
        refused(dynamic, {"inputs": inputs, "memory_size": rows(128)}, "NaN or infinity")


def test_an_oversized_memory_size(dynamic):
    refused(dynamic, {"inputs": x(), "memory_size": rows(1 << 30)},
            "is more than this model's limit")


def test_an_input_longer_than_the_largest_bucket_holds(dynamic):
    refused(dynamic, {"inputs": x(time=9000), "memory_size": rows(0)},
            "an input of 9000 steps needs more than 2048 memory rows")


def test_an_empty_memory_size(dynamic):
    refused(dynamic, {"inputs": x(), "memory_size": np.zeros([0], np.int32)},
            "memory_size must hold at least one value")


def test_a_state_of_no_valid_size_or_batch(stateful):
    go_on = {"inputs": x(), "memory_size": rows(128), "sequence_start": np.array([0], np.int32)}
    refused(stateful, {**go_on, "state": np.zeros([1, 7], np.float32)},
            "which no number of memory rows gives")
    refused(stateful, {**go_on, "state": np.zeros([3, 7], np.float32)}, "for this batch")
    state = np.full([1, 220 + 128 * 22], np.nan, np.float32)
    refused(stateful, {**go_on, "state": state}, "state holds NaN")


def test_ragged_batches_that_do_not_add_up(ragged):
    flat = np.zeros([5 * 9], np.float32)
    refused(ragged, {"inputs": flat, "item_shape": np.array([[6, 9]], np.int32)},
            "item_shape describes 54")
    refused(ragged, {"inputs": flat, "item_shape": np.array([[5, 8]], np.int32)},
            "sequence 0 has shape [5, 8]")
    refused(ragged, {"inputs": flat, "item_shape": np.array([[0, 9]], np.int32)},
            "sequence 0 has shape [0, 9]")


def test_a_ragged_batch_of_mixed_lengths_answers_as_one_by_one(ragged, dynamic):
    """Lengths whose rows differ (128 and 256) in one batch: grouped by rows, padded."""
    lengths = [3, 70, 20, 64, 1, 100]
    seqs = [task_inputs("copy", n, 1, seed=n)[0] for n in lengths]
    flat = np.concatenate([s.ravel() for s in seqs])
    shapes = np.array([s.shape for s in seqs], np.int32)
    together = ragged.run(["probabilities"], {"inputs": flat, "item_shape": shapes})[0]
    alone = [dynamic.run(["probabilities"], {"inputs": s[None], "memory_size": rows(0)})[0][0]
             for s in seqs]
    assert together.shape == (sum(len(s) for s in seqs), 8)
    assert np.abs(together - np.concatenate(alone)).max() <= 1e-6


def test_the_item_shape_name_is_tritons():
    from ntm.export import fused, triton

    assert fused.ITEM_SHAPE_NAME == triton.ITEM_SHAPE_NAME


def test_a_call_too_large_for_memory_is_refused_before_any_allocation(dynamic):
    """1000-step copies at 2048 rows: their attention output would pass 1 GiB."""
    refused(dynamic, {"inputs": x(batch=40, time=2001), "memory_size": rows(2048)},
            "is too large: its attention alone would take 1250 MiB (the limit is 1024)")


def without_initial_memory(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` as fused models were written before the optional initial_memory input."""
    node = proto.graph.node[0]
    assert node.input[-1] == "initial_memory"
    del node.input[-1]
    kept = [i for i in proto.graph.initializer if i.name != "initial_memory"]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return proto


def test_a_model_without_initial_memory_starts_from_a_constant_one(kernel_library):
    feeds = {"inputs": task_inputs("copy", 10, 2, seed=4), "memory_size": rows(128)}
    old = session(without_initial_memory(rebuilt_proto("dynamic")).SerializeToString(), True)
    p_old = old.run(["probabilities"], feeds)[0]
    assert np.array_equal(p_old, rebuilt("dynamic").run(["probabilities"], feeds)[0])
    # ... and a learned one is used: the same weights answer otherwise from other rows.
    memory = np.random.default_rng(0).uniform(-1, 1, [128, 20]).astype(np.float32)
    p_learned = rebuilt("dynamic", initial_memory=memory).run(["probabilities"], feeds)[0]
    assert np.abs(p_learned - p_old).max() > 1e-3


def test_an_initial_memory_of_the_wrong_shape(kernel_library):
    proto = rebuilt_proto("dynamic", initial_memory=np.zeros([64, 20], np.float32))
    with pytest.raises(Exception, match=r"initial_memory has shape \[64, 20\], expected "
                                        r"\[128, 20\]"):
        session(proto.SerializeToString(), True)
