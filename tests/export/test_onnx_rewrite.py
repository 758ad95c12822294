"""``ntm.export.onnx_rewrite`` on small hand-built graphs: each pass removes what it says and
the model computes the same values; patterns it must not touch stay as they are."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ntm.export import onnx_rewrite as rw


def const(name, value, dtype=None):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def loop_model(counter_start=0, counter_step=1, condition="tf2onnx", trip_from_cast=True):
    """out = sum over t of table[t] + x, as tf2onnx writes a while loop: a carried counter t
    that a Gather reads, a condition recomputed as Cast(iter) < Cast(T) And True, a carried
    accumulator, and a scan output of each step's value."""
    body_nodes = [
        helper.make_node("Add", ["t", "one"], ["t_next"]),
        helper.make_node("Gather", ["table", "t"], ["row"]),
        helper.make_node("Add", ["acc", "row"], ["acc_next"]),
        helper.make_node("Identity", ["acc_next"], ["scan"]),
    ]
    if condition == "tf2onnx":
        body_nodes += [
            helper.make_node("Cast", ["iter"], ["iter_i"], to=TensorProto.INT32),
            helper.make_node("Cast", ["steps"], ["steps_i"], to=TensorProto.INT32),
            helper.make_node("Less", ["iter_i", "steps_i"], ["less"]),
            helper.make_node("And", ["less", "true"], ["cond_out"]),
        ]
    else:  # a condition the Loop's trip count does not imply: sum(acc) < limit
        body_nodes += [helper.make_node("ReduceSum", ["acc_next"], ["total"], keepdims=0),
                       helper.make_node("Less", ["total", "limit"], ["cond_out"])]
    body = helper.make_graph(
        body_nodes, "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("t", TensorProto.INT32, []),
         helper.make_tensor_value_info("acc", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("t_next", TensorProto.INT32, []),
         helper.make_tensor_value_info("acc_next", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("scan", TensorProto.FLOAT, [3])],
        initializer=[const("one", counter_step, np.int32), const("true", True, bool),
                     const("limit", 1e9, np.float32)])
    trip = "trip" if trip_from_cast else "steps"
    outer = [helper.make_node("Shape", ["table"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero64"], ["steps"], axis=0)]
    if trip_from_cast:
        outer.append(helper.make_node("Cast", ["steps"], ["trip"], to=TensorProto.INT64))
    outer.append(helper.make_node("Loop", [trip, "init_cond", "t0", "x"],
                                  ["t_final", "acc_final", "scans"], body=body))
    graph = helper.make_graph(
        outer, "main", [helper.make_tensor_value_info("table", TensorProto.FLOAT, ["T", 3]),
                        helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("acc_final", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("scans", TensorProto.FLOAT, ["T", 3])],
        initializer=[const("zero64", 0, np.int64), const("init_cond", True, bool),
                     const("t0", counter_start, np.int32)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model, feeds):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options).run(None, feeds)


@pytest.fixture
def loop_feeds():
    rng = np.random.default_rng(0)
    return {"table": rng.standard_normal((5, 3)).astype(np.float32),
            "x": rng.standard_normal(3).astype(np.float32)}


def body_ops(model):
    return [n.op_type for n in rw._body(model.graph.node[-1]).node]


def test_loop_plumbing_goes_and_the_values_stay(loop_feeds):
    before = loop_model()
    after = loop_model()
    done = rw.rewrite(after)
    onnx.checker.check_model(after)
    assert done["trip_count_only"] == 1 and done["counter_from_iteration"] == 1
    assert done["identity_outputs"] == 1  # the accumulator is carried and scanned: one value
    assert sorted(body_ops(after)) == ["Add", "Gather"]
    assert len(after.graph.node[-1].input) == 3  # trip count, condition, accumulator
    for got, want in zip(run(after, loop_feeds), run(before, loop_feeds)):
        np.testing.assert_array_equal(got, want)


def test_trip_count_only_also_when_the_trip_count_is_not_cast(loop_feeds):
    model = loop_model(trip_from_cast=False)
    model.graph.node[-1].input[0] = "steps64"
    model.graph.node.insert(2, helper.make_node("Cast", ["steps"], ["steps64"],
                                                to=TensorProto.INT64))
    assert rw.trip_count_only(model.graph, model.graph.node[-1])


def test_a_condition_the_trip_count_does_not_imply_stays():
    model = loop_model(condition="own")
    assert not rw.trip_count_only(model.graph, model.graph.node[-1])


@pytest.mark.parametrize("start, step", [(1, 1), (0, 2)])
def test_a_counter_that_is_not_the_iteration_number_stays(start, step, loop_feeds):
    model = loop_model(counter_start=start, counter_step=step)
    assert not rw.counter_from_iteration(model.graph, model.graph.node[-1])


def test_a_counter_whose_final_value_is_used_stays():
    model = loop_model()
    model.graph.output.append(helper.make_tensor_value_info("t_final", TensorProto.INT32, []))
    assert not rw.counter_from_iteration(model.graph, model.graph.node[-1])


def flat_model(nodes, inits, out_shape=None):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("order", ["min_max", "max_min"])
def test_min_and_max_with_constant_bounds_become_one_clip(order):
    first, second = ("Min", "Max") if order == "min_max" else ("Max", "Min")
    bound1, bound2 = ("hi", "lo") if order == "min_max" else ("lo", "hi")
    nodes = [helper.make_node(first, ["x", bound1], ["m"]),
             helper.make_node(second, [bound2, "m"], ["y"])]
    inits = [const("hi", 0.5, np.float32), const("lo", -0.25, np.float32)]
    before, after = flat_model(nodes, inits), flat_model(nodes, inits)
    assert rw.fuse_clip(after.graph) == 1
    assert [n.op_type for n in after.graph.node] == ["Clip"]
    x = {"x": np.random.default_rng(1).standard_normal((2, 4, 5)).astype(np.float32)}
    np.testing.assert_array_equal(run(after, x)[0], run(before, x)[0])


def test_min_read_elsewhere_is_not_fused():
    nodes = [helper.make_node("Min", ["x", "hi"], ["m"]),
             helper.make_node("Max", ["m", "lo"], ["c"]),
             helper.make_node("Add", ["m", "c"], ["y"])]
    model = flat_model(nodes, [const("hi", 0.5, np.float32), const("lo", -0.5, np.float32)])
    assert rw.fuse_clip(model.graph) == 0


@pytest.mark.parametrize("axes, keepdims, shape", [([2], 1, [2, 4, 1]), ([1], 0, [2, 5]),
                                                    ([1, 2], 1, [2, 1, 1])])
def test_square_and_sum_become_reduce_sum_square(axes, keepdims, shape):
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "axes"], ["y"], keepdims=keepdims,
                              noop_with_empty_axes=1)]
    inits = [const("axes", axes, np.int64)]
    before, after = flat_model(nodes, inits, shape), flat_model(nodes, inits, shape)
    assert rw.reduce_sum_square(after.graph, 17) == 1
    onnx.checker.check_model(after)
    assert [n.op_type for n in after.graph.node] == ["ReduceSumSquare"]
    x = {"x": np.random.default_rng(2).standard_normal((2, 4, 5)).astype(np.float32)}
    np.testing.assert_allclose(run(after, x)[0], run(before, x)[0], rtol=1e-6)


def test_a_product_of_two_tensors_is_not_a_square():
    nodes = [helper.make_node("Mul", ["x", "x2"], ["sq"]),
             helper.make_node("ReduceSum", ["sq", "axes"], ["y"])]
    model = flat_model(nodes, [const("axes", [2], np.int64),
                               const("x2", np.ones((2, 4, 5)), np.float32)])
    assert rw.reduce_sum_square(model.graph, 17) == 0


def test_dead_nodes_go_and_graph_outputs_stay():
    nodes = [helper.make_node("Neg", ["x"], ["unused"]),
             helper.make_node("Abs", ["unused"], ["unused2"]),
             helper.make_node("Relu", ["x"], ["y"])]
    model = flat_model(nodes, [], [2, 4, 5])
    assert rw.remove_dead_nodes(model.graph) == 2
    assert [n.op_type for n in model.graph.node] == ["Relu"]


def test_initializers_nothing_reads_go_in_the_body_and_outside(loop_feeds):
    model = loop_model()
    before = run(model, loop_feeds)
    main, body = model.graph, rw._body(model.graph.node[-1])
    main.initializer.append(const("unread_outside", 2.0, np.float32))
    main.initializer.append(const("x", np.zeros(3), np.float32))  # an input's default: stays
    body.initializer.append(const("unread_inside", 3.0, np.float32))
    done = rw.rewrite(model)
    onnx.checker.check_model(model)
    names = {t.name for t in main.initializer}
    assert "unread_outside" not in names and "t0" not in names  # t0: the dropped counter's
    assert "x" in names and "zero64" in names and "init_cond" in names
    assert {t.name for t in body.initializer} == set()  # one, true, limit, unread_inside
    assert done["dead_initializers"] == 6
    for got, want in zip(run(model, loop_feeds), before):
        np.testing.assert_array_equal(got, want)


def test_an_initializer_read_only_inside_a_loop_body_stays():
    model = loop_model()
    body = rw._body(model.graph.node[-1])
    model.graph.initializer.append(const("scale", 2.0, np.float32))
    body.node.append(helper.make_node("Mul", ["acc_next", "scale"], ["scaled"]))
    body.output.append(helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [3]))
    model.graph.node[-1].output.append("scaled_scans")
    assert rw.remove_dead_initializers(model.graph) == 0
    assert "scale" in {t.name for t in model.graph.initializer}


def test_matmul_and_bias_on_matrices_become_gemm():
    nodes = [helper.make_node("MatMul", ["a", "w"], ["mm"]),
             helper.make_node("Add", ["b", "mm"], ["y"])]
    rng = np.random.default_rng(3)
    inits = [const("w", rng.standard_normal((5, 3)), np.float32),
             const("b", rng.standard_normal(3), np.float32)]

    def model():
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 5])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], initializer=inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    before, after = model(), model()
    assert rw.matmul_add_to_gemm(after.graph, rw._ranks(after)) == 1
    assert [n.op_type for n in after.graph.node] == ["Gemm"]
    a = {"a": rng.standard_normal((4, 5)).astype(np.float32)}
    np.testing.assert_allclose(run(after, a)[0], run(before, a)[0], rtol=1e-6, atol=1e-6)


def test_matmul_of_a_batch_of_matrices_is_not_gemm():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]),
             helper.make_node("Add", ["mm", "b"], ["y"])]
    model = flat_model(nodes, [const("w", np.ones((5, 3)), np.float32),
                               const("b", np.ones(3), np.float32)], [2, 4, 3])
    assert rw.matmul_add_to_gemm(model.graph, rw._ranks(model)) == 0
