"""Rewrites of a converted ONNX model that remove nodes tf2onnx leaves in the time loop.

onnxruntime spends about as long dispatching each node of a ``Loop`` body at batch 1 as many
nodes take to compute, so every node that runs once per time step costs a share of the step.
Each rewrite below is a local transformation to the same arithmetic (bit for bit, except that
``reduce_sum_square`` sums the same squares in one kernel, and that a weight read from the
enclosing graph is a constant to onnxruntime, which pre-packs it for its GEMM: another
summation order, ~1e-5 in a copy model's probabilities after 81 steps), and each is checked:
by a unit test on a small hand-built graph (``tests/export/test_onnx_rewrite.py``) and by the
export proof, which compares the rewritten model with TensorFlow on fresh inputs.

    rewrite(model) -> counts     all of them, in order, on every Loop body (in place)

The passes, per Loop node (nested Loops too):
- ``trip_count_only``: tf2onnx recomputes ``iteration < trip count`` in the body (two Casts, a
  Less, an And with a constant True); the Loop already stops at its trip count, so the body's
  condition output becomes its condition input. (-4 nodes)
- ``counter_from_iteration``: tf2onnx carries its own step counter ``t`` (an Add per step)
  beside ONNX's iteration number; when ``t`` starts at 0, grows by 1 and only indexes Gathers,
  those Gathers take the iteration number and ``t`` goes. (-1 node, -1 carried value)
- ``fuse_clip``: Min(x, hi) -> Max(., lo) with constant bounds becomes one Clip. (-1 node)
- ``reduce_sum_square``: Mul(x, x) -> ReduceSum becomes one ReduceSumSquare. (-1 node each)
- ``identity_outputs``: a body output made by an Identity (tf2onnx writes one for each value
  that is both carried and collected per step) names the Identity's input instead; an ONNX
  graph may list one value as two outputs. (-1 node each)
- ``matmul_add_to_gemm``: MatMul(A, W) + b with A of rank 2, W of rank 2 and b of rank 1 is
  one Gemm. onnxruntime makes the same fusion when it loads the model, so this changes the
  file, not the time. (-1 node each)
Dead nodes are dropped afterwards, and then the initializers nothing reads any more (the
bounds a Clip replaced, the loop condition's constants): onnxruntime would warn about each one
whenever it loads the model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


# ----------------------------------------------------------------------------- helpers

def _body(loop: onnx.NodeProto) -> onnx.GraphProto:
    return next(a.g for a in loop.attribute if a.name == "body")


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Values of the graph's initializers and Constant nodes (value attribute only)."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def _subgraph_uses(node: onnx.NodeProto) -> set[str]:
    """Every name a node's subgraphs read (their own inputs, outputs and names are included,
    which can only make a name look used: the safe side)."""
    names: set[str] = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            for n in g.node:
                names.update(n.input)
                names |= _subgraph_uses(n)
            names.update(o.name for o in g.output)
    return names


def _uses(graph: onnx.GraphProto) -> dict[str, int]:
    """How often each name is read: node inputs, subgraph reads, graph outputs."""
    counts: dict[str, int] = {}
    for node in graph.node:
        for name in list(node.input) + sorted(_subgraph_uses(node)):
            if name:
                counts[name] = counts.get(name, 0) + 1
    for out in graph.output:
        counts[out.name] = counts.get(out.name, 0) + 1
    return counts


def _is_scalar(values: dict[str, np.ndarray], name: str, value) -> bool:
    return name in values and values[name].size == 1 and values[name].reshape(()) == value


def remove_dead_nodes(graph: onnx.GraphProto) -> int:
    """Drop nodes none of whose outputs is read; returns how many went."""
    removed = 0
    while True:
        uses = _uses(graph)
        dead = [n for n in graph.node if not any(uses.get(o, 0) for o in n.output)]
        if not dead:
            return removed
        for n in dead:
            graph.node.remove(n)
        removed += len(dead)


def remove_dead_initializers(graph: onnx.GraphProto) -> int:
    """Drop initializers nothing reads (no node, subgraph or graph output): constants whose
    readers earlier passes replaced. onnxruntime drops them too, but warns about each one every
    time it loads the model. Returns how many went."""
    uses, inputs = _uses(graph), {i.name for i in graph.input}  # (an input's default stays)
    dead = [t for t in graph.initializer if not uses.get(t.name, 0) and t.name not in inputs]
    for t in dead:
        graph.initializer.remove(t)
    return len(dead)


def _drop_carried(loop: onnx.NodeProto, k: int) -> None:
    """Remove loop-carried value k (0-based among the carried values) from the Loop and its
    body. Its final value must be unused outside."""
    body = _body(loop)
    del body.input[2 + k]
    del body.output[1 + k]
    del loop.input[2 + k]
    del loop.output[k]


# ----------------------------------------------------------------------------- passes

def trip_count_only(outer: onnx.GraphProto, loop: onnx.NodeProto) -> bool:
    """The body's condition ``Cast(iter) < Cast(X)`` [And True], where the Loop's trip count is
    X or Cast(X), is true on every iteration the trip count allows: pass the condition input
    through instead."""
    body = _body(loop)
    if not loop.input or not loop.input[0]:
        return False
    trip = loop.input[0]
    outer_prod = _producers(outer)
    trip_sources = {trip}
    if trip in outer_prod and outer_prod[trip].op_type == "Cast":
        trip_sources.add(outer_prod[trip].input[0])
    prod, values = _producers(body), _constants(body)
    iteration, cond_in = body.input[0].name, body.input[1].name
    cond = body.output[0].name
    node = prod.get(cond)
    if node is not None and node.op_type == "And":
        a, b = node.input
        if _is_scalar(values, b, True):
            node = prod.get(a)
        elif _is_scalar(values, a, True):
            node = prod.get(b)
        else:
            return False
    if node is None or node.op_type != "Less":
        return False

    def source(name: str) -> str:
        p = prod.get(name)
        return p.input[0] if p is not None and p.op_type == "Cast" else name

    if source(node.input[0]) != iteration or source(node.input[1]) not in trip_sources:
        return False
    body.output[0].name = cond_in
    return True


def counter_from_iteration(outer: onnx.GraphProto, loop: onnx.NodeProto,
                           scope: dict[str, np.ndarray] | None = None) -> bool:
    """A carried counter that starts at 0, grows by 1 each step and only indexes Gathers is
    the iteration number: the Gathers read that, and the counter goes. ``scope``: the
    constants the Loop can see [default: ``outer``'s own]."""
    body = _body(loop)
    prod, values = _producers(body), _constants(body)
    outer_values = _constants(outer) if scope is None else scope
    outer_uses = _uses(outer)
    iteration = body.input[0].name
    for k in range(len(loop.input) - 2):
        name, out = body.input[2 + k].name, body.output[1 + k].name
        step = prod.get(out)
        if step is None or step.op_type != "Add" or name not in step.input:
            continue
        other = step.input[1] if step.input[0] == name else step.input[0]
        if not _is_scalar(values, other, 1) or not _is_scalar(outer_values, loop.input[2 + k], 0):
            continue
        if outer_uses.get(loop.output[k], 0):
            continue
        readers = [n for n in body.node if name in n.input and n is not step]
        if not all(n.op_type == "Gather" and list(n.input).index(name) == 1
                   and list(n.input).count(name) == 1 for n in readers):
            continue
        for n in readers:
            n.input[1] = iteration
        body.output[1 + k].name = name  # pass through until dropped: the Add is now dead
        _drop_carried(loop, k)
        return True
    return False


def fuse_clip(graph: onnx.GraphProto) -> int:
    """Min(x, hi) -> Max(., lo) (or Max then Min) with constant scalar bounds -> Clip."""
    values, uses = _constants(graph), _uses(graph)
    fused = 0
    for first in list(graph.node):
        if first.op_type not in ("Min", "Max") or len(first.input) != 2:
            continue
        x, bound = first.input
        if bound not in values or values[bound].size != 1 or uses.get(first.output[0]) != 1:
            continue
        second = next((n for n in graph.node if first.output[0] in n.input), None)
        want = "Max" if first.op_type == "Min" else "Min"
        if second is None or second.op_type != want or len(second.input) != 2:
            continue
        other = second.input[1] if second.input[0] == first.output[0] else second.input[0]
        if other not in values or values[other].size != 1:
            continue
        if values[bound].dtype != values[other].dtype:
            continue
        hi, lo = (bound, other) if first.op_type == "Min" else (other, bound)
        if values[lo].reshape(()) > values[hi].reshape(()):
            continue
        names = []
        for b in (lo, hi):  # Clip wants scalars (rank 0)
            scalar = numpy_helper.from_array(values[b].reshape(()), f"{b}__clip_scalar")
            if scalar.name not in {t.name for t in graph.initializer}:
                graph.initializer.append(scalar)
            names.append(scalar.name)
        clip = helper.make_node("Clip", [x] + names, list(second.output),
                                name=f"{second.name or second.output[0]}__clip")
        index = list(graph.node).index(first)
        graph.node.remove(first)
        graph.node.remove(second)
        graph.node.insert(index, clip)
        fused += 1
    return fused


def reduce_sum_square(graph: onnx.GraphProto, opset: int) -> int:
    """Mul(x, x) read only by ReduceSum(., constant axes) -> ReduceSumSquare(x)."""
    values, uses = _constants(graph), _uses(graph)
    fused = 0
    for mul in list(graph.node):
        if mul.op_type != "Mul" or mul.input[0] != mul.input[1] or uses.get(mul.output[0]) != 1:
            continue
        red = next((n for n in graph.node if mul.output[0] in n.input), None)
        if red is None or red.op_type != "ReduceSum" or red.input[0] != mul.output[0]:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in red.attribute}
        if len(red.input) > 1 and red.input[1]:
            if red.input[1] not in values:
                continue
            axes = [int(a) for a in values[red.input[1]].reshape(-1)]
        else:
            axes = attrs.get("axes")
        if not axes and attrs.get("noop_with_empty_axes"):
            continue  # (with axes given, the flag changes nothing: tf2onnx always sets it)
        keep = int(attrs.get("keepdims", 1))
        name = f"{red.name or red.output[0]}__sumsq"
        if opset >= 18:
            inputs = [mul.input[0]]
            if axes is not None:
                t = numpy_helper.from_array(np.array(axes, np.int64), f"{name}_axes")
                graph.initializer.append(t)
                inputs.append(t.name)
            node = helper.make_node("ReduceSumSquare", inputs, list(red.output), name=name,
                                    keepdims=keep)
        elif axes is not None:
            node = helper.make_node("ReduceSumSquare", [mul.input[0]], list(red.output),
                                    name=name, axes=axes, keepdims=keep)
        else:
            node = helper.make_node("ReduceSumSquare", [mul.input[0]], list(red.output),
                                    name=name, keepdims=keep)
        index = list(graph.node).index(mul)
        graph.node.remove(mul)
        graph.node.remove(red)
        graph.node.insert(index, node)
        fused += 1
    return fused


def identity_outputs(graph: onnx.GraphProto) -> int:
    """Graph outputs produced by an Identity name the Identity's input instead."""
    prod, inputs = _producers(graph), {i.name for i in graph.input}
    done = 0
    for out in graph.output:
        node = prod.get(out.name)
        if node is not None and node.op_type == "Identity" and node.input[0] not in inputs:
            out.name = node.input[0]
            done += 1
    return done


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Ranks of the values of ``model``, its subgraphs' included, that shape inference finds."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks: dict[str, int] = {}

    def visit(g: onnx.GraphProto) -> None:
        for v in list(g.input) + list(g.value_info) + list(g.output):
            if v.type.tensor_type.HasField("shape"):
                ranks[v.name] = len(v.type.tensor_type.shape.dim)
        for t in g.initializer:
            ranks[t.name] = len(t.dims)
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    visit(a.g)

    visit(inferred.graph)
    return ranks


def matmul_add_to_gemm(graph: onnx.GraphProto, ranks: dict[str, int]) -> int:
    """MatMul(A, W) read only by Add(., b), A and W of rank 2, b of rank 1 -> Gemm(A, W, b)."""
    uses = _uses(graph)
    fused = 0
    for mm in list(graph.node):
        if mm.op_type != "MatMul" or uses.get(mm.output[0]) != 1:
            continue
        if ranks.get(mm.input[0]) != 2 or ranks.get(mm.input[1]) != 2:
            continue
        add = next((n for n in graph.node if mm.output[0] in n.input), None)
        if add is None or add.op_type != "Add":
            continue
        bias = add.input[1] if add.input[0] == mm.output[0] else add.input[0]
        if bias == mm.output[0] or ranks.get(bias) != 1:
            continue
        gemm = helper.make_node("Gemm", [mm.input[0], mm.input[1], bias], list(add.output),
                                name=f"{add.name or add.output[0]}__gemm")
        index = list(graph.node).index(mm)
        graph.node.remove(mm)
        graph.node.remove(add)
        graph.node.insert(index, gemm)
        fused += 1
    return fused


def _loops(graph: onnx.GraphProto, scope: dict[str, np.ndarray]):
    """(graph, Loop node, constants it can see) for every Loop in ``graph`` and, depth first,
    in the subgraphs of its nodes (a Loop inside an If or another Loop's body)."""
    scope = {**scope, **_constants(graph)}
    for node in list(graph.node):
        if node.op_type == "Loop":
            yield graph, node, scope
        for a in node.attribute:
            for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                yield from _loops(g, scope)


def rewrite(model: onnx.ModelProto) -> dict[str, int]:
    """Apply every pass to every Loop, nested ones included (in place); returns what each
    did."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    passes = ("trip_count_only", "counter_from_iteration", "fuse_clip", "reduce_sum_square",
              "identity_outputs", "dead_nodes", "matmul_add_to_gemm", "dead_initializers")
    done = dict.fromkeys(passes, 0)
    ranks = _ranks(model)  # once: the passes remove values, never change a kept one's rank
    for outer, loop, scope in list(_loops(model.graph, {})):
        body = _body(loop)
        done["trip_count_only"] += trip_count_only(outer, loop)
        done["counter_from_iteration"] += counter_from_iteration(outer, loop, scope)
        done["fuse_clip"] += fuse_clip(body)
        done["reduce_sum_square"] += reduce_sum_square(body, opset)
        done["identity_outputs"] += identity_outputs(body)
        done["dead_nodes"] += remove_dead_nodes(body)
        done["matmul_add_to_gemm"] += matmul_add_to_gemm(body, ranks)
        done["dead_initializers"] += remove_dead_initializers(body)
    done["dead_initializers"] += remove_dead_initializers(model.graph)  # a dropped counter's start
    return done


def loop_body_nodes(model: onnx.ModelProto) -> int:
    """Nodes in the (single) Loop body of a dynamic export: what runs once per time step."""
    loops = [n for n in model.graph.node if n.op_type == "Loop"]
    if len(loops) != 1:
        raise ValueError(f"expected one Loop, found {len(loops)}")
    return len(_body(loops[0]).node)
