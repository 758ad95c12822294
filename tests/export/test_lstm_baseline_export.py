"""``ntm export`` of an LSTM baseline run: every format, proven against TensorFlow like the
NTM's exports, with no memory_size input and no attention output; the options that mean
nothing without memory are one-line usage errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from ntm.cli.main import cli  # noqa: E402
from ntm.contract import metadata as meta  # noqa: E402
from ntm.contract.state_layout import baseline_state_size  # noqa: E402
from ntm.export.exporter import ExportError, export_run  # noqa: E402
from ntm.export.verify import CHUNK_TOLERANCE  # noqa: E402
from ntm.training.runs import Run  # noqa: E402


def tf_probabilities(run_dir):
    model = Run.load(run_dir).model
    fn = tf.function(lambda x: tf.sigmoid(model(x).logits))
    return lambda x: fn(tf.constant(x)).numpy()


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def entries(path):
    return meta.decode({p.key: p.value for p in onnx.load(str(path)).metadata_props})


@pytest.fixture(scope="module")
def baseline_onnx(baseline_run, tmp_path_factory):
    return export_run(baseline_run, "onnx", out=tmp_path_factory.mktemp("lstm") / "m.onnx")


def test_the_onnx_export_takes_inputs_alone_and_answers_probabilities(baseline_onnx):
    model = onnx.load(str(baseline_onnx.path))
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    assert [n.op_type for n in model.graph.node].count("Loop") == 1


def test_the_onnx_export_equals_tensorflow_inside_and_beyond_the_training_lengths(
        baseline_run, baseline_onnx):
    reference, sess = tf_probabilities(baseline_run), session(baseline_onnx.path)
    rng = np.random.default_rng(0)
    for batch, steps in [(1, 1), (3, 9), (8, 17), (2, 120)]:  # trained on 3 to 9 steps
        x = rng.integers(0, 2, (batch, steps, 9)).astype(np.float32)
        p = sess.run(["probabilities"], {"inputs": x})[0]
        assert p.shape == (batch, steps, 8)
        np.testing.assert_allclose(p, reference(x), atol=1e-5, rtol=0)


def test_the_proof_and_the_metadata_have_no_memory(baseline_run, baseline_onnx):
    assert [c.label for c in baseline_onnx.comparisons] == ["length 1", "length 4", "length 8"]
    assert all(c.attention_diff is None and c.passed for c in baseline_onnx.comparisons)
    found = entries(baseline_onnx.path)
    assert found["ntm.model"] == Run.load(baseline_run).model_config.to_dict()
    export = found["ntm.export"]
    assert (export["outputs"], export["heads"], export["memory"]) == (["probabilities"], None,
                                                                      None)
    assert [v["point"] for v in export["verified"]] == ["length 1", "length 4", "length 8"]
    assert all(v["memory_size"] is None for v in export["verified"])
    assert found["ntm.training"]["step"] == 20 and found["ntm.task"]["task"] == "copy"
    assert meta.ModelParts.of(found["ntm.model"]) == meta.ModelParts(memory=False)


def test_a_fixed_length_export_is_unrolled_and_pads(baseline_run, tmp_path):
    result = export_run(baseline_run, "onnx", length=9, out=tmp_path / "fixed.onnx")
    model = onnx.load(str(result.path))
    assert "Loop" not in {n.op_type for n in model.graph.node}
    assert [o.name for o in model.graph.output] == ["probabilities"]
    x = np.random.default_rng(1).integers(0, 2, (2, 5, 9)).astype(np.float32)
    p = session(result.path).run(["probabilities"], {
        "inputs": np.pad(x, ((0, 0), (0, 4), (0, 0)))})[0][:, :5]
    np.testing.assert_allclose(p, tf_probabilities(baseline_run)(x), atol=1e-5, rtol=0)
    assert entries(result.path)["ntm.export"]["length"] == 9


def test_a_stateful_export_carries_every_layers_h_and_c(baseline_run, tmp_path):
    result = export_run(baseline_run, "onnx", out=tmp_path / "st.onnx", stateful=True)
    sess = session(result.path)
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["inputs", "sequence_start", "state"]
    x = np.random.default_rng(2).integers(0, 2, (3, 30, 9)).astype(np.float32)
    whole = sess.run(None, {"inputs": x})  # the defaults: a fresh start
    names = [o.name for o in sess.get_outputs()]
    assert names == ["probabilities", "state_out"]
    state, pieces = None, []
    for i, (a, b) in enumerate([(0, 7), (7, 8), (8, 30)]):
        feeds = {"inputs": x[:, a:b], "sequence_start": np.array([int(i == 0)], np.int32)}
        if state is not None:
            feeds["state"] = state
        p, state = sess.run(None, feeds)
        pieces.append(p)
    assert state.shape == (3, baseline_state_size(Run.load(baseline_run).model_config.to_dict()))
    assert state.shape[1] == 2 * 2 * 12
    assert np.abs(np.concatenate(pieces, 1) - whole[0]).max() <= CHUNK_TOLERANCE
    assert np.abs(state - whole[1]).max() <= CHUNK_TOLERANCE
    np.testing.assert_allclose(whole[0], tf_probabilities(baseline_run)(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stateful, signatures", [
    (False, {"serving_default"}), (True, {"serving_default", "sequence"})])
def test_the_savedmodel_serves_inputs_alone(baseline_run, tmp_path, stateful, signatures):
    result = export_run(baseline_run, "savedmodel", out=tmp_path / "sm", stateful=stateful)
    loaded = tf.saved_model.load(str(result.path))
    assert set(loaded.signatures) == signatures
    x = np.random.default_rng(3).integers(0, 2, (2, 11, 9)).astype(np.float32)
    out = loaded.signatures["serving_default"](inputs=tf.constant(x))
    assert "attention" not in out
    np.testing.assert_allclose(out["probabilities"].numpy(), tf_probabilities(baseline_run)(x),
                               atol=1e-6, rtol=0)


def test_the_triton_entries_have_no_memory_input_and_no_attention(baseline_run, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    configs = {}
    for name, options in (("ragged", {}), ("sequence", {"stateful": True}),
                          ("fixed", {"length": 9})):
        result = export_run(baseline_run, "triton", out=repo, model_name=name, **options)
        configs[name] = text_format.Parse((result.path / "config.pbtxt").read_text(),
                                          model_config_pb2.ModelConfig())
        assert all(c.passed for c in result.comparisons)
    for config in configs.values():
        assert [i.name for i in config.input] == ["inputs"]
        assert [o.name for o in config.output] == ["probabilities"]
    assert configs["ragged"].input[0].allow_ragged_batch
    assert configs["ragged"].batch_input[0].target_name == ["item_shape"]
    assert configs["sequence"].sequence_batching.state[0].input_name == "state"
    assert list(configs["fixed"].output[0].dims) == [9, 8]
    # the ragged model runs a batch of mixed lengths as each sequence alone
    ragged = session(repo / "ragged" / "1" / "model.onnx")
    xs = [np.random.default_rng(t).integers(0, 2, (1, t, 9)).astype(np.float32)
          for t in (3, 40, 9)]
    p = ragged.run(["probabilities"], {
        "inputs": np.concatenate([x.reshape(-1) for x in xs]),
        "item_shape": np.array([x.shape[1:] for x in xs], np.int32)})[0]
    expected = np.concatenate([tf_probabilities(baseline_run)(x)[0] for x in xs])
    np.testing.assert_allclose(p, expected, atol=1e-5, rtol=0)


def test_the_cli_exports_under_the_baselines_own_name(baseline_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["export", str(baseline_run)])
    assert result.exit_code == 0, result.output
    assert "exports/copy-lstm/copy-lstm.onnx" in result.output
    assert "no attention output" in result.output and "verified" in result.output
    assert (tmp_path / "exports" / "copy-lstm" / "copy-lstm.onnx").is_file()


@pytest.mark.parametrize("args, message", [
    (["--length", "9", "--memory-size", "64"],
     "--memory-size: the LSTM baseline has no memory rows to fix"),
    (["--max-memory-size", "4096"], "--max-memory-size: the LSTM baseline has no memory to grow"),
    (["--kernel", "fused"], "--kernel fused: the fused kernel runs the NTM's memory and heads in "
                            "one op; the LSTM baseline has no memory"),
])
def test_options_without_meaning_for_the_baseline_are_usage_errors(baseline_run, tmp_path,
                                                                    args, message):
    result = CliRunner().invoke(cli, ["export", str(baseline_run), *args,
                                      "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.onnx").exists()
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1


def test_the_library_refuses_them_too(baseline_run, tmp_path):
    with pytest.raises(ExportError, match="--max-memory-size: the LSTM baseline"):
        export_run(baseline_run, "onnx", out=tmp_path / "m.onnx", max_memory_size=4096)
    assert not (tmp_path / "m.onnx").exists()
