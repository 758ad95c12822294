"""``ntm export``: formats, equality with TensorFlow, metadata, and clear errors."""

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from ntm.cli.main import cli  # noqa: E402
from ntm.contract import metadata as meta  # noqa: E402
from ntm.export.exporter import ExportError, export_run  # noqa: E402
from ntm.training.runs import Run  # noqa: E402


def tf_forward(run_dir, memory_size=None):
    model = Run.load(run_dir).model

    def fn(x):
        out = model(x, memory_size=memory_size)
        return tf.sigmoid(out.logits), out.weights

    fn = tf.function(fn)
    return lambda x: tuple(t.numpy() for t in fn(tf.constant(x)))


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_dynamic_onnx_matches_tensorflow_for_any_length_and_batch(tiny_run, dynamic_onnx):
    ref = tf_forward(tiny_run)
    sess = session(dynamic_onnx.path)
    rng = np.random.default_rng(0)
    for batch, time_steps in [(1, 1), (1, 2), (64, 3), (7, 17), (2, 50), (64, 100), (3, 200)]:
        # Raw random inputs: every channel, any layout, far past memory_size (16) steps so
        # the circular shift wraps around many times.
        x = rng.integers(0, 2, (batch, time_steps, 9)).astype(np.float32)
        p_ref, a_ref = ref(x)
        p, a = sess.run(["probabilities", "attention"], {"inputs": x})
        assert p.shape == (batch, time_steps, 8) and a.shape == (batch, time_steps, 3, 16)
        np.testing.assert_allclose(p, p_ref, atol=1e-4)
        np.testing.assert_allclose(a, a_ref, atol=1e-4)


def test_dynamic_graph_has_one_loop_and_symbolic_axes(dynamic_onnx):
    model = onnx.load(str(dynamic_onnx.path))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node].count("Loop") == 1
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "time"] and dims[2].dim_value == 9
    assert model.opset_import[0].version >= 17
    assert dynamic_onnx.max_diff <= 1e-4
    assert {c.label for c in dynamic_onnx.comparisons} >= {
        "length 1, 16 rows", "length 4, 16 rows", "length 8, 16 rows", "length 15, 32 rows"}


@pytest.mark.parametrize("rows", [32, 64])
def test_dynamic_onnx_takes_the_memory_size_per_call(tiny_run, dynamic_onnx, rows):
    """More rows than trained: the same as TensorFlow with those rows, also on raw inputs long
    enough to wrap the circular shift at the new N; without the input, the trained N."""
    ref = tf_forward(tiny_run, memory_size=rows)
    sess = session(dynamic_onnx.path)
    x = np.random.default_rng(rows).integers(0, 2, (3, 3 * rows, 9)).astype(np.float32)
    p, a = sess.run(["probabilities", "attention"],
                    {"inputs": x, "memory_size": np.array([rows], np.int32)})
    assert a.shape == (3, 3 * rows, 3, rows)
    p_ref, a_ref = ref(x)
    np.testing.assert_allclose(p, p_ref, atol=1e-4)
    np.testing.assert_allclose(a, a_ref, atol=1e-4)
    default = sess.run(["attention"], {"inputs": x[:, :5]})[0]
    assert default.shape == (3, 5, 3, 16)
    # Triton stacks one value per request: the largest one is used.
    stacked = sess.run(["attention"], {"inputs": x[:, :5],
                                       "memory_size": np.array([16, rows, 16], np.int32)})[0]
    assert stacked.shape == (3, 5, 3, rows)


def test_metadata_round_trips(tiny_run, dynamic_onnx):
    model = onnx.load(str(dynamic_onnx.path))
    entries = meta.decode({p.key: p.value for p in model.metadata_props})
    run = Run.load(tiny_run)
    model_config, state = run.model_config, run.state
    assert entries["ntm.model"] == model_config.to_dict()
    assert entries["ntm.task"]["task"] == "copy"
    assert entries["ntm.task"]["train_lengths"] == [1, 4]
    assert entries["ntm.training"]["step"] == int(state.step.numpy())
    assert entries["ntm.export"]["mode"] == "dynamic"
    assert entries["ntm.export"]["verified"]
    assert entries["ntm.versions"]["opset"] == 17 and entries["ntm.versions"]["tf2onnx"]
    from ntm.contract.tasks import task_from_metadata
    assert task_from_metadata(entries["ntm.task"]).input_size == 9


def test_fixed_length_export_is_unrolled_and_pads(tiny_run, tmp_path):
    result = export_run(tiny_run, "onnx", length=9, out=tmp_path / "fixed.onnx")
    model = onnx.load(str(result.path))
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert "Loop" not in {n.op_type for n in model.graph.node}
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 9
    ref = tf_forward(tiny_run)
    sess = session(result.path)
    rng = np.random.default_rng(1)
    for t in (9, 5, 1):  # its own length, then shorter inputs right-padded
        x = rng.integers(0, 2, (3, t, 9)).astype(np.float32)
        padded = np.pad(x, ((0, 0), (0, 9 - t), (0, 0)))
        p = sess.run(["probabilities"], {"inputs": padded})[0][:, :t]
        np.testing.assert_allclose(p, ref(x)[0], atol=1e-4)


def test_fixed_length_export_picks_the_rows_its_length_needs(tiny_run, tmp_path):
    """Trained with 16 rows: 81 steps hold a copy of 40 vectors, which needs 42 rows -> 64."""
    result = export_run(tiny_run, "onnx", length=81, out=tmp_path / "fixed81.onnx")
    model = onnx.load(str(result.path))
    entries = meta.decode({p.key: p.value for p in model.metadata_props})
    assert entries["ntm.export"]["memory"]["fixed"] == 64
    x = np.random.default_rng(2).integers(0, 2, (2, 81, 9)).astype(np.float32)
    p, a = session(result.path).run(["probabilities", "attention"], {"inputs": x})
    assert a.shape == (2, 81, 3, 64)
    np.testing.assert_allclose(p, tf_forward(tiny_run, memory_size=64)(x)[0], atol=1e-4)
    assert all(c.memory_size == 64 for c in result.comparisons)


def test_savedmodel_runs_without_the_project(tiny_run, tmp_path):
    """TF Serving's convention: serving_default takes ``inputs`` alone (the trained rows, as
    the ONNX model without its memory_size input); memory growth has its own signature, where
    0 rows means the rows the input needs."""
    result = export_run(tiny_run, "savedmodel", out=tmp_path / "sm")
    onnx_path = export_run(tiny_run, "onnx", out=tmp_path / "copy.onnx").path
    code = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(result.path)!r})
        assert set(loaded.signatures) == {{"serving_default", "with_memory_size"}}
        fn = loaded.signatures["serving_default"]
        assert [s.name for s in fn.structured_input_signature[1].values()] == ["inputs"]
        x = np.random.default_rng(0).integers(0, 2, (2, 7, 9)).astype(np.float32)
        out = fn(inputs=tf.constant(x))
        assert out["probabilities"].shape == (2, 7, 8), out["probabilities"].shape
        assert out["attention"].shape == (2, 7, 3, 16)
        np.save({str(tmp_path / "default.npy")!r}, out["probabilities"].numpy())
        grow = loaded.signatures["with_memory_size"]
        out = grow(inputs=tf.constant(x), memory_size=tf.constant([48]))
        assert out["attention"].shape == (2, 7, 3, 48)
        # 0: the model chooses; 40 steps of copy need 21 rows -> 32
        out = grow(inputs=tf.zeros([1, 40, 9]), memory_size=tf.constant([0]))
        assert out["attention"].shape == (1, 40, 3, 32), out["attention"].shape
        assert not any(m == "ntm" or m.startswith(("ntm.", "export", "cli")) for m in sys.modules)
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.stdout.strip().endswith("ok"), run.stderr[-2000:]
    x = np.random.default_rng(0).integers(0, 2, (2, 7, 9)).astype(np.float32)
    p = session(onnx_path).run(["probabilities"], {"inputs": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "default.npy"), p, atol=1e-5, rtol=0)
    labels = [c.label for c in result.comparisons]
    assert "length 4, 16 rows, inputs alone (serving_default)" in labels


def test_triton_repository_config_parses(tiny_run, tmp_path):
    """The dynamic Triton entry: ragged batching (flat inputs and a BATCH_ITEM_SHAPE batch
    input), probabilities scattered back by each request's shape, no optional input (Triton
    refuses one on a batching model), thread and instance settings as parameters."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    result = export_run(tiny_run, "triton", out=tmp_path / "repo")
    assert result.path == tmp_path / "repo" / "copy"
    config = text_format.Parse((result.path / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert config.name == "copy" and config.backend == "onnxruntime"
    assert config.max_batch_size == 64 and config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == ["inputs"] and config.input[0].allow_ragged_batch
    assert list(config.input[0].dims) == [-1, 9] and not config.input[0].optional
    assert config.batch_input[0].kind == model_config_pb2.BatchInput.BATCH_ITEM_SHAPE
    assert config.batch_input[0].target_name == ["item_shape"]
    assert [o.name for o in config.output] == ["probabilities"]
    assert config.batch_output[0].kind == model_config_pb2.BatchOutput.BATCH_SCATTER_WITH_INPUT_SHAPE
    assert config.instance_group[0].count == 2
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert "every point above in one ragged batch" in [c.label for c in result.comparisons]


def test_triton_ragged_model_groups_sequences_by_memory_rows(tiny_run, tmp_path):
    """One run of the ragged model over sequences needing 16, 32 and 64 rows equals each
    sequence alone through the ONNX export with the rows ntm serve would give it."""
    result = export_run(tiny_run, "triton", out=tmp_path / "repo")
    ragged = session(result.path / "1" / "model.onnx")
    standard = session(export_run(tiny_run, "onnx", out=tmp_path / "copy.onnx").path)
    rng = np.random.default_rng(5)
    steps = {3: 16, 81: 64, 29: 16, 41: 32, 1: 16}  # copy: T steps need (T - 1) // 2 + 2 rows
    xs = [rng.integers(0, 2, (1 + (t % 2), t, 9)).astype(np.float32) for t in steps]
    shapes = np.array([x.shape[1:] for x in xs for _ in range(len(x))], np.int32)
    flat = np.concatenate([x.reshape(-1) for x in xs])
    p = ragged.run(["probabilities"], {"inputs": flat, "item_shape": shapes})[0]
    assert p.shape == (sum(x.shape[0] * x.shape[1] for x in xs), 8)
    offset = 0
    for x, rows in zip(xs, steps.values()):
        expected = standard.run(["probabilities"], {
            "inputs": x, "memory_size": np.array([rows], np.int32)})[0]
        size = x.shape[0] * x.shape[1]
        np.testing.assert_allclose(p[offset:offset + size].reshape(expected.shape), expected,
                                   atol=1e-5, rtol=0)
        offset += size
    # ntm serve cannot serve it, and says what to serve instead
    from ntm.serving.errors import ModelLoadError
    from ntm.serving.runtime import ModelRuntime
    with pytest.raises(ModelLoadError, match="Triton repository's model.*--format onnx"):
        ModelRuntime(result.path / "1" / "model.onnx")
    # past the largest bucket (2048 rows: 4095 steps) the run fails, naming the limit
    long = np.zeros((1, 4097, 9), np.float32)
    with pytest.raises(Exception, match="input_needs_more_than_2048_memory_rows"):
        ragged.run(["probabilities"], {"inputs": long.reshape(-1),
                                       "item_shape": np.array([[4097, 9]], np.int32)})


def test_dynamic_onnx_chooses_its_rows_when_asked_for_none(dynamic_onnx):
    """memory_size 0: the rows the input needs (as ntm serve chooses them)."""
    sess = session(dynamic_onnx.path)
    for steps, rows in ((9, 16), (41, 32), (81, 64)):
        a = sess.run(["attention"], {"inputs": np.zeros((1, steps, 9), np.float32),
                                     "memory_size": np.array([0], np.int32)})[0]
        assert a.shape[-1] == rows

def test_a_failed_proof_leaves_the_old_export(tiny_run, tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the good export")
    import ntm.export.verify as verify
    monkeypatch.setattr(verify, "TOLERANCE", -1.0)  # nothing can pass
    monkeypatch.setattr(verify, "NOISE_FACTOR", -1.0)
    with pytest.raises(ExportError, match="differ by"):
        export_run(tiny_run, "onnx", out=target)
    assert target.read_bytes() == b"the good export"
    assert not list(tmp_path.glob(".ntm-export-*"))


@pytest.mark.parametrize("args, code, message", [
    (["export", "/nonexistent/run"], 1, "does not exist"),
    (["export", "--format", "tflite"], 2, "'tflite' is not one of"),
    (["export", "--length", "0"], 2, "must be >= 1"),
    (["export", "--length", "ten"], 2, "neither 'dynamic' nor an integer"),
    (["export", "--memory-size", "0"], 2, "--memory-size"),
])
def test_cli_bad_input(args, code, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_run_without_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    result = CliRunner().invoke(cli, ["export", str(tmp_path)])
    assert result.exit_code == 1 and "no checkpoint" in result.output


def test_cli_fixed_length_too_short(tiny_run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "--length", "2",
                                      "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "too short" in result.output


def test_cli_memory_size_is_for_fixed_length_exports(tiny_run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "--memory-size", "64",
                                      "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "fixed-length" in result.output
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "--length", "9", "--memory-size",
                                      "8", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "below the 16 rows" in result.output


def test_cli_reports_sizes_and_difference(tiny_run, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(tiny_run), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "KB" in result.output and "verified" in result.output


# Nodes in the Loop body, i.e. what onnxruntime dispatches once per time step
# (82 before it). Lower it when the graph gets leaner; never raise it without a measurement.
MAX_LOOP_BODY_NODES = 66


def test_loop_body_stays_lean(dynamic_onnx):
    from ntm.export.onnx_rewrite import loop_body_nodes

    body = loop_body_nodes(onnx.load(str(dynamic_onnx.path)))
    assert body <= MAX_LOOP_BODY_NODES, f"{body} nodes run per time step"


@pytest.mark.parametrize("name", ["copy", "recall", "repeat-copy"])
def test_bundled_models_have_the_lean_loop_body(name):
    from ntm.export.onnx_rewrite import loop_body_nodes
    from ntm.export.bundle import PRETRAINED

    model = onnx.load(str(PRETRAINED / f"{name}.onnx"))
    assert loop_body_nodes(model) <= MAX_LOOP_BODY_NODES
    assert unread_initializers(model) == []


@pytest.mark.parametrize("name", ["copy", "recall", "repeat-copy"])
def test_bundled_models_choose_their_rows_when_asked_for_none(name):
    """memory_size 0 lets the model choose (docs/export.md): each bundled model, from a fresh
    start, runs with the smallest bucket that holds the input, and answers as when asked for
    those rows by number."""
    from ntm.contract.memory_plan import choose_memory_size
    from ntm.contract.tasks import get_task
    from ntm.export.bundle import PRETRAINED

    task = get_task(name)
    sess = session(PRETRAINED / f"{name}.onnx")
    rng = np.random.default_rng(3)
    for difficulty in task.default_eval_points()[::3]:
        x = task.sequence(rng, difficulty)[0][None].astype(np.float32)
        names = ["probabilities", "attention"]
        p0, a0 = sess.run(names, {"inputs": x, "memory_size": np.array([0], np.int32)})
        rows = choose_memory_size(task.memory_rows_for_time_steps(x.shape[1]), 128)
        assert a0.shape[-1] == rows
        p, _ = sess.run(names, {"inputs": x, "memory_size": np.array([rows], np.int32)})
        np.testing.assert_array_equal(p0, p)


def unread_initializers(model) -> list[str]:
    """Initializers of any graph of ``model`` that no node, subgraph or output reads (what
    onnxruntime warns about on every load)."""
    from ntm.export.onnx_rewrite import _uses

    def visit(graph, found):
        uses = _uses(graph)
        found += [t.name for t in graph.initializer if not uses.get(t.name, 0)]
        for node in graph.node:
            for a in node.attribute:
                for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    visit(g, found)
        return found

    return visit(model.graph, [])


def test_an_export_leaves_no_initializer_unread(dynamic_onnx):
    assert unread_initializers(onnx.load(str(dynamic_onnx.path))) == []


def test_the_ragged_proof_holds_each_point_to_its_own_tolerance():
    """Sequences run together in one ragged batch may differ from the same sequences run alone
    by as much as TensorFlow itself moves on those very sequences (long chaotic ones), and no
    more than 1e-4 where it does not move."""
    import numpy as np

    from ntm.contract.tasks import Difficulty, get_task
    from ntm.export.exporter import ExportError, _prove_ragged
    from ntm.export.verify import PERTURBATION, Comparison, ProofPoint

    task = get_task("copy")
    points = [ProofPoint(Difficulty(2), None), ProofPoint(Difficulty(5), None)]
    chaotic_steps = task.time_steps(Difficulty(2))

    def check(moved, alone_floors=(0.0, 0.0)):
        """Point i's batched answer moved by moved[i]; TensorFlow's outputs move by 1e-3 under
        the proof's input perturbation on the first point's sequences, not at all on the
        second's, whatever the points' own proofs measured on other sequences."""
        def reference(x, n):
            gain = 1e-3 / PERTURBATION if x.shape[1] == chaotic_steps else 0.0
            return np.broadcast_to(gain * x[:, :1, :1], (len(x), x.shape[1], 8)).copy(), None

        def forward(sequences):
            return [reference(x, None)[0] + m for x, m in zip(sequences, moved)]

        def prove(candidate, at):
            return [Comparison(p.label(task), 5, 2, 0.0, None, noise_floor=f, memory_size=None)
                    for p, f in zip(at, alone_floors)]

        return _prove_ragged(reference, forward, task, None, prove, points)[-1]

    mixed = check([2e-3, 5e-5])  # within 4 x 1e-3 on the chaotic sequences
    assert mixed.passed and mixed.probabilities_diff == pytest.approx(2e-3, rel=0.05)
    assert mixed.noise_floor == pytest.approx(1e-3, rel=0.05)
    with pytest.raises(ExportError, match=r"ragged batch differs .* by 0\.0002 \(tolerance 0\.0001\)"):
        check([5e-5, 2e-4])  # the quiet sequences may not borrow the chaotic ones' tolerance
    with pytest.raises(ExportError, match=r"by 0\.0002 \(tolerance 0\.0001\)"):
        check([5e-5, 2e-4], alone_floors=(1.0, 1.0))  # nor a floor measured on others


def test_a_model_that_chooses_its_own_rows_is_proven_where_it_can_run(counting_ngrams):
    """A Triton ragged model has no rows input: it is proven at the points whose rows are the
    ones it chooses. For a task whose rows never grow (N-grams of a count-keeping model) the
    grown graph's point (twice the rows) drops out; for the built-in N-grams, twice its
    training length at the trained rows (400 bits need 256); copy keeps every point."""
    from ntm.contract.tasks import Difficulty, get_task
    from ntm.export.exporter import points_of_own_rows
    from ntm.export.signatures import RowsTable
    from ntm.export.verify import ProofPoint, verification_points

    def own(task):
        points = verification_points(task, None, 128)
        assert {p.memory_size for p in points} == {128, 256}
        return points, points_of_own_rows(task, points, RowsTable.for_task(task, 128))

    points, kept = own(counting_ngrams)
    assert {p.memory_size for p in kept} == {128}
    points, kept = own(get_task("ngrams"))
    assert [p for p in points if p not in kept] == [ProofPoint(Difficulty(400), 128)]
    points, kept = own(get_task("copy"))
    assert kept == points
    assert points_of_own_rows(get_task("copy"), points, None) == points  # no memory
