"""Benchmark: what an ONNX Loop step costs in onnxruntime before any arithmetic, and whether
ONNX's own LSTM operator beats the LSTM cell as the export writes it (the floor under the Loop-body rewrites).

Two synthetic models, built here with ``onnx.helper`` (no trained weights needed: neither
measures the NTM's arithmetic), one thread, calls interleaved round by round:

1. A Loop of ``steps`` iterations whose body is K Mul nodes in a chain on a [1, 100] tensor,
   for several K, and the same K x steps nodes unrolled: the slope over K is onnxruntime's cost
   per node, the intercept its cost per Loop iteration. With the NTM's Loop body at 66 nodes
   this is the floor of a step at batch 1, whatever the nodes compute.
2. One LSTM step (100 units, input 29 = the copy model's 9 inputs + 20 read values) inside a
   Loop: as the export writes it (Concat, Gemm, Split, 3 Sigmoid, 2 Tanh, 3 Mul, Add: 12
   nodes), as ONNX's LSTM operator with its state carried as [1, batch, 100], and as the LSTM
   operator wrapped in the Unsqueeze/Squeeze nodes the rest of the body's [batch, 100] layout
   needs. Outputs are checked equal (1e-5) before anything is timed.

    python benchmarks/dispatch_floor.py            # batch 1 and 64
    python benchmarks/dispatch_floor.py --small    # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.inference import parse_ints, time_engines  # noqa: E402
from benchmarks.results_io import write_results  # noqa: E402

UNITS, INPUTS = 100, 29  # the copy model's controller: 100 units, 9 inputs + 20 read values


def _value(name: str, shape=None):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def loop_model(body_nodes: list, carried: list[str], initializers: list, inputs: list[str],
               steps: int):
    """A model running ``body_nodes`` ``steps`` times; each name in ``carried`` is read as
    NAME_in and written as NAME_out by the body, and starts from the graph input NAME0."""
    from onnx import TensorProto, helper

    body = helper.make_graph(
        body_nodes + [helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
        + [_value(c + "_in") for c in carried],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])]
        + [_value(c + "_out") for c in carried])
    loop = helper.make_node("Loop", ["steps", ""] + [c + "0" for c in carried],
                            [c + "_final" for c in carried], body=body)
    graph = helper.make_graph(
        [loop], "g", [_value(n) for n in inputs], [_value(c + "_final") for c in carried],
        [helper.make_tensor("steps", TensorProto.INT64, [], [steps])] + initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def chain_models(nodes: int, steps: int) -> tuple:
    """(Loop of ``nodes`` Muls per iteration, the same unrolled)."""
    from onnx import TensorProto, helper

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0001])
    body, previous = [], "x_in"
    for k in range(nodes):
        body.append(helper.make_node("Mul", [previous, "scale"], [f"y{k}"]))
        previous = f"y{k}"
    body.append(helper.make_node("Identity", [previous], ["x_out"]))
    looped = loop_model(body, ["x"], [scale], ["x0"], steps)
    flat, previous = [], "x0"
    for t in range(steps):
        for k in range(nodes):
            flat.append(helper.make_node("Mul", [previous, "scale"], [f"y{t}_{k}"]))
            previous = f"y{t}_{k}"
    flat.append(helper.make_node("Identity", [previous], ["x_final"]))
    graph = helper.make_graph(flat, "g", [_value("x0")], [_value("x_final")], [scale])
    return looped, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def lstm_models(steps: int, seed: int) -> dict:
    """The LSTM step three ways (see the module docstring); same weights, gate order i, f, g, o
    as ``ntm.model.controller.LSTMController`` (ONNX's LSTM wants i, o, f, c)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    kernel = (rng.standard_normal((INPUTS + UNITS, 4 * UNITS)) * 0.1).astype(np.float32)
    bias = (rng.standard_normal(4 * UNITS) * 0.1).astype(np.float32)
    node = helper.make_node
    cell = [node("Concat", ["x", "h_in"], ["xh"], axis=1), node("Gemm", ["xh", "W", "b"], ["z"]),
            node("Split", ["z", "splits"], ["zi", "zf", "zg", "zo"], axis=1),
            node("Sigmoid", ["zi"], ["si"]), node("Sigmoid", ["zf"], ["sf"]),
            node("Tanh", ["zg"], ["tg"]), node("Sigmoid", ["zo"], ["so"]),
            node("Mul", ["sf", "c_in"], ["fc"]), node("Mul", ["si", "tg"], ["ig"]),
            node("Add", ["fc", "ig"], ["c_out"]), node("Tanh", ["c_out"], ["tc"]),
            node("Mul", ["so", "tc"], ["h_out"])]
    i, f, g, o = np.split(kernel, 4, axis=1)
    bi, bf, bg, bo = np.split(bias, 4)
    onnx_w = np.concatenate([i[:INPUTS], o[:INPUTS], f[:INPUTS], g[:INPUTS]], 1).T[None]
    onnx_r = np.concatenate([i[INPUTS:], o[INPUTS:], f[INPUTS:], g[INPUTS:]], 1).T[None]
    onnx_b = np.concatenate([bi, bo, bf, bg, np.zeros(4 * UNITS, np.float32)])[None]
    lstm_weights = [numpy_helper.from_array(np.ascontiguousarray(a, np.float32), n)
                    for a, n in ((onnx_w, "Wx"), (onnx_r, "Rh"), (onnx_b, "B"))]
    lstm_3d = [node("LSTM", ["x3", "Wx", "Rh", "B", "", "h_in", "c_in"], ["Y", "h_out", "c_out"],
                    hidden_size=UNITS)]
    wrapped = [node("Unsqueeze", ["x", "axis0"], ["x3"]),
               node("Unsqueeze", ["h_in", "axis0"], ["h3"]),
               node("Unsqueeze", ["c_in", "axis0"], ["c3"]),
               node("LSTM", ["x3", "Wx", "Rh", "B", "", "h3", "c3"], ["Y", "yh", "yc"],
                    hidden_size=UNITS),
               node("Squeeze", ["yh", "axis0"], ["h_out"]),
               node("Squeeze", ["yc", "axis0"], ["c_out"])]
    axis0 = numpy_helper.from_array(np.array([0], np.int64), "axis0")
    return {
        "export's cell (12 nodes)": loop_model(
            cell, ["h", "c"], [numpy_helper.from_array(kernel, "W"),
                               numpy_helper.from_array(bias, "b"),
                               numpy_helper.from_array(np.full(4, UNITS, np.int64), "splits")],
            ["x", "h0", "c0"], steps),
        "LSTM op, state [1, batch, units] (1 node)": loop_model(
            lstm_3d, ["h", "c"], lstm_weights, ["x3", "h0", "c0"], steps),
        "LSTM op in Unsqueeze/Squeeze (6 nodes)": loop_model(
            wrapped, ["h", "c"], lstm_weights + [axis0], ["x", "h0", "c0"], steps),
    }


def session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def medians(calls: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each zero-argument call, interleaved in a shuffled order per round
    (``benchmarks.inference.time_engines``)."""
    times = time_engines({k: (lambda _, fn=fn: fn()) for k, fn in calls.items()}, None,
                         repeats, shuffle=True)
    return {k: float(np.median(v)) for k, v in times.items()}


def run(args) -> dict:
    steps = args.steps
    chains = {}
    x = np.ones((1, 100), np.float32)
    for k in args.nodes:
        looped, flat = chain_models(k, steps)
        for kind, model in (("loop", looped), ("unrolled", flat)):
            s = session(model)
            chains[f"{kind} {k}"] = (lambda s=s: s.run(None, {"x0": x}))
    chain_times = medians(chains, args.repeats)
    per_step = {k: 1e6 * v / steps for k, v in chain_times.items()}
    loop_k = np.array(args.nodes, float)
    loop_us = np.array([per_step[f"loop {k}"] for k in args.nodes])
    slope, intercept = np.polyfit(loop_k, loop_us, 1)

    models = lstm_models(steps, args.seed)
    sessions = {name: session(m) for name, m in models.items()}
    lstm_rows = []
    rng = np.random.default_rng(args.seed)
    for batch in args.batches:
        x2 = rng.standard_normal((batch, INPUTS)).astype(np.float32)
        zero = np.zeros((batch, UNITS), np.float32)
        feeds = {}
        for name, s in sessions.items():
            three_d = name.startswith("LSTM op, state")
            feeds[name] = ({"x3": x2[None], "h0": zero[None], "c0": zero[None]} if three_d
                           else {"x": x2, "h0": zero, "c0": zero})
        outputs = {n: s.run(None, feeds[n])[0].reshape(batch, UNITS) for n, s in sessions.items()}
        reference = outputs["export's cell (12 nodes)"]
        for name, out in outputs.items():
            if not np.allclose(out, reference, atol=1e-5):
                raise SystemExit(f"{name} disagrees with the export's cell at batch {batch}")
        timed = medians({n: (lambda s=s, f=feeds[n]: s.run(None, f))
                         for n, s in sessions.items()}, args.repeats)
        base = timed["export's cell (12 nodes)"]
        for name, seconds in timed.items():
            lstm_rows.append({"batch": batch, "variant": name,
                              "us_per_step": round(1e6 * seconds / steps, 2),
                              "x_export_cell": round(base / seconds, 3)})
    return {
        "benchmark": "dispatch_floor", "mode": "small" if args.small else "full",
        "command": "python benchmarks/dispatch_floor.py" + (" --small" if args.small else ""),
        "steps": steps, "repeats": args.repeats, "threads": 1,
        "chain": {k: round(v, 3) for k, v in per_step.items()},
        "us_per_node": round(float(slope), 3), "us_per_iteration": round(float(intercept), 3),
        "floor_66_nodes_us_per_step": round(float(intercept + 66 * slope), 2),
        "lstm": lstm_rows,
        "versions": {"python": platform.python_version(), **_versions()},
    }


def _versions() -> dict:
    import onnx
    import onnxruntime
    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def markdown(r: dict) -> str:
    lines = [f"# onnxruntime's floor for a Loop step ({r['mode']})", "",
             f"Command: `{r['command']}`; {r['steps']} iterations, one thread, median of "
             f"{r['repeats']} interleaved calls.", "",
             "## A chain of K Mul nodes on a [1, 100] tensor", "",
             "| K nodes | Loop: us / step | unrolled: us / step |", "| --- | --- | --- |"]
    ks = sorted({int(k.split()[1]) for k in r["chain"]})
    for k in ks:
        lines.append(f"| {k} | {r['chain'][f'loop {k}']} | {r['chain'][f'unrolled {k}']} |")
    lines += ["", f"Fitted over the Loop rows: **{r['us_per_node']} us per node** and "
                  f"**{r['us_per_iteration']} us per Loop iteration**, so a 66-node body costs "
                  f"~{r['floor_66_nodes_us_per_step']} us per step before any arithmetic.", "",
              "## One LSTM step (100 units, input 29) inside a Loop", "",
              "| batch | variant | us / step | x export's cell |", "| --- | --- | --- | --- |"]
    for row in r["lstm"]:
        lines.append(f"| {row['batch']} | {row['variant']} | {row['us_per_step']} | "
                     f"{row['x_export_cell']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="few calls; used by the tests")
    parser.add_argument("--nodes", type=parse_ints, default=None,
                        help="chain lengths K [default: 1,10,30,66; small: 1,10]")
    parser.add_argument("--batches", type=parse_ints, default=None,
                        help="LSTM batch sizes [default: 1,64; small: 1]")
    parser.add_argument("--steps", type=int, default=41, help="Loop iterations (a length-20 copy)")
    parser.add_argument("--repeats", type=int, default=None, help="[default: 200; small: 5]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.nodes = args.nodes or ([1, 10] if args.small else [1, 10, 30, 66])
    args.batches = args.batches or ([1] if args.small else [1, 64])
    args.repeats = args.repeats or (5 if args.small else 200)
    if args.steps < 1 or len(args.nodes) < 2:
        parser.error("--steps must be at least 1 and --nodes needs two lengths to fit a line")
    result = run(args)
    write_results(args.out, "dispatch_floor", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
