"""``ntm export --stateful``: a sequence run in pieces equals it run whole, and the state's
layout is the contract's."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from ntm.cli.main import cli  # noqa: E402
from ntm.contract import metadata as meta  # noqa: E402
from ntm.contract.state_layout import (fixed_state_size, rows_in_state,  # noqa: E402
                                       state_size)
from ntm.export.exporter import ExportError, export_run  # noqa: E402
from ntm.export.verify import CHUNK_TOLERANCE, chunk_bounds  # noqa: E402
from ntm.training.runs import Run  # noqa: E402


@pytest.fixture(scope="module")
def stateful_onnx(tiny_run, tmp_path_factory):
    return export_run(tiny_run, "onnx", out=tmp_path_factory.mktemp("st") / "copy.onnx",
                      stateful=True)


@pytest.fixture(scope="module")
def sess(stateful_onnx):
    return ort.InferenceSession(str(stateful_onnx.path), providers=["CPUExecutionProvider"])


def run(sess, x, rows=None, start=True, state=None):
    feeds = {"inputs": x, "sequence_start": np.array([int(start)], np.int32)}
    if rows is not None:
        feeds["memory_size"] = np.array([rows], np.int32)
    if state is not None:
        feeds["state"] = state
    return sess.run(["probabilities", "attention", "state_out"], feeds)


@pytest.mark.parametrize("batch,steps,cuts,rows", [
    (1, 9, [3, 4], 16), (3, 40, [1, 17, 30], 16), (2, 33, [20], 64), (4, 70, [10, 11, 50], 32)])
def test_pieces_equal_one_call(sess, batch, steps, cuts, rows):
    x = np.random.default_rng(steps).integers(0, 2, (batch, steps, 9)).astype(np.float32)
    p_one, a_one, s_one = run(sess, x, rows)
    state, probs, attention = None, [], []
    for i, (a, b) in enumerate(zip([0] + cuts, cuts + [steps])):
        # memory_size after the start is ignored: the rows were fixed when the sequence began
        p, att, state = run(sess, x[:, a:b], rows * 2 if i else rows, start=i == 0,
                            state=state)
        probs.append(p)
        attention.append(att)
    assert np.abs(np.concatenate(probs, 1) - p_one).max() <= CHUNK_TOLERANCE
    assert np.abs(np.concatenate(attention, 1) - a_one).max() <= CHUNK_TOLERANCE
    assert np.abs(state - s_one).max() <= CHUNK_TOLERANCE
    assert a_one.shape[-1] == rows and s_one.shape == (batch, 44 + rows * 9)


def test_state_layout_is_the_contracts(tiny_run, sess):
    """state_out is [controller h, c | reads | weightings | memory], per the contract."""
    model = Run.load(tiny_run).model
    config = model.config.to_dict()
    x = np.random.default_rng(1).integers(0, 2, (2, 12, 9)).astype(np.float32)
    out = model(tf.constant(x), return_memory=True)
    _, attention, state = run(sess, x)
    n = config["memory_size"]
    assert state.shape == (2, state_size(config, n)) and rows_in_state(config, state.shape[1]) == n
    memory = state[:, -n * config["memory_width"]:].reshape(2, n, -1)
    np.testing.assert_allclose(memory, out.memory.numpy()[:, -1], atol=1e-5)
    heads = config["num_read_heads"] + config["num_write_heads"]
    weights = state[:, -n * (config["memory_width"] + heads):-n * config["memory_width"]]
    np.testing.assert_allclose(weights.reshape(2, heads, n), attention[:, -1], atol=1e-6)
    assert fixed_state_size(config) == 2 * 16 + 2 * 6


def test_defaults_run_it_like_a_stateless_model(sess, dynamic_onnx):
    """A caller that sends only inputs (and memory_size) gets the stateless export's answer."""
    plain = ort.InferenceSession(str(dynamic_onnx.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).integers(0, 2, (3, 25, 9)).astype(np.float32)
    for feeds in ({"inputs": x}, {"inputs": x, "memory_size": np.array([32], np.int32)}):
        expected = plain.run(["probabilities", "attention"], feeds)
        got = sess.run(["probabilities", "attention"], feeds)
        np.testing.assert_allclose(got[0], expected[0], atol=1e-6)
        np.testing.assert_allclose(got[1], expected[1], atol=1e-6)


def test_metadata_and_proof(stateful_onnx):
    model = onnx.load(str(stateful_onnx.path))
    entries = meta.decode({p.key: p.value for p in model.metadata_props})
    stateful = entries["ntm.export"]["stateful"]
    assert stateful == {"start": "sequence_start", "state": "state", "state_out": "state_out",
                        "proven_chunks": 3, "chunk_tolerance": CHUNK_TOLERANCE}
    assert [i.name for i in model.graph.input] == ["inputs", "memory_size", "sequence_start",
                                                   "state"]
    assert stateful_onnx.max_diff <= 1e-4 and len(stateful_onnx.comparisons) == 4
    loop = next(n for n in model.graph.node if n.op_type == "Loop")
    assert len(loop.attribute[0].g.node) <= 66  # the state costs nothing per time step


def test_chunk_bounds_cover_every_step():
    for steps in (1, 2, 3, 4, 10, 223):
        bounds = chunk_bounds(steps)
        assert bounds[0][0] == 0 and bounds[-1][1] == steps and len(bounds) == min(steps, 3)
        assert all(b > a for a, b in bounds) and all(
            b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))


def test_savedmodel_can_be_stateful(tiny_run, tmp_path):
    result = export_run(tiny_run, "savedmodel", out=tmp_path / "sm", stateful=True)
    signatures = tf.saved_model.load(str(result.path)).signatures
    assert set(signatures) == {"serving_default", "sequence"}
    for name in signatures:
        assert {"state_out", "probabilities", "attention"} <= set(
            signatures[name].structured_outputs)
    assert set(signatures["sequence"].structured_input_signature[1]) == {
        "inputs", "memory_size", "sequence_start", "state"}


def test_stateful_needs_a_dynamic_length(tiny_run, tmp_path):
    with pytest.raises(ExportError, match="--stateful needs a dynamic length"):
        export_run(tiny_run, "onnx", length=20, out=tmp_path / "x.onnx", stateful=True)
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "--stateful", "--length", "20",
                                      "-o", str(tmp_path / "y.onnx")])
    assert result.exit_code in (1, 2) and "--stateful needs a dynamic length" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "y.onnx").exists()


def test_triton_sequence_batching_config_parses(tiny_run, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    result = export_run(tiny_run, "triton", out=tmp_path / "repo", stateful=True)
    config = text_format.Parse((result.path / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    batcher = config.sequence_batching
    assert batcher.max_sequence_idle_microseconds > 0
    control = batcher.control_input[0]
    assert control.name == "sequence_start"
    assert control.control[0].kind == model_config_pb2.ModelSequenceBatching.Control.CONTROL_SEQUENCE_START
    assert list(control.control[0].int32_false_true) == [0, 1]
    # one slot per live sequence, not one per instance
    assert batcher.oldest.max_candidate_sequences == 1000
    state = batcher.state[0]
    assert (state.input_name, state.output_name) == ("state", "state_out")
    assert state.data_type == model_config_pb2.TYPE_FP32 and list(state.dims) == [-1, -1]
    assert list(config.input[0].dims) == [-1, -1, 9] and list(config.input[1].dims) == [1]
    assert config.input[1].optional
    # the state and the control are Triton's business: not among the listed inputs
    assert {i.name for i in config.input} == {"inputs", "memory_size"}
    model = onnx.load(str(result.path / "1" / "model.onnx"))
    onnx.checker.check_model(model)
    # Triton's backend sees no input that has a default; a control's dims are exactly [1]
    defaults = {t.name for t in model.graph.initializer}
    assert "sequence_start" not in defaults and "state" not in defaults
    start = next(i for i in model.graph.input if i.name == "sequence_start")
    assert [d.dim_value for d in start.type.tensor_type.shape.dim] == [1]
