"""Benchmark: copy inference through the TensorFlow SavedModel, the dynamic ONNX model and the
fixed-length (unrolled) ONNX model, side by side in one process and one run.

For each copy length and batch size the same inputs go through every engine; calls are
interleaved round by round (so drift on a shared machine hits all engines alike) and the median
is reported as microseconds per time step, sequences per second, the speed-up over the
SavedModel, and achieved FLOP/s as a fraction of a float32 matrix-multiply rate measured in the
same run with the same thread count (``ntm.model.flops`` counts a step's FLOPs from the model sizes).
Every engine's outputs are first checked against the SavedModel's, so nothing wrong is timed.

Without ``--run`` the model is a freshly initialised default copy NTM: speed does not depend on
the weights. Exported with this project's own writers (``ntm.export.writers``).

A second table prices memory that grows: the bundled copy model (trained weights) on a length-20
copy at N = 128, 512 and 1024 memory rows, interleaved with the bundled model as it was before
memory could grow (``benchmarks/baseline/copy-fixed-memory.onnx``, fixed at 128 rows).

A third compares the bundled copy model with itself as bundled before the leaner Loop
body (``benchmarks/baseline/copy-82-node-loop.onnx``, same weights): length-20 copy, batch 1
and 64, calls interleaved; the issue wants >= 1.8x at both, and the dynamic ONNX model no slower
than the SavedModel at any length and batch of the first table.

    python benchmarks/inference.py                 # lengths 10,20,50,100; batch 1, 8 and 64
    python benchmarks/inference.py --small         # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results_io import write_results  # noqa: E402
from ntm.cli.common import quiet_tensorflow  # noqa: E402

TARGETS = {"onnx_speedup_batch1": 10.0, "onnx_speedup_batch64": 5.0, "fixed_copy20_batch1_ms": 1.0}
BASELINE = HERE / "baseline" / "copy-fixed-memory.onnx"  # the bundled copy model before growth
BEFORE_REWRITES = HERE / "baseline" / "copy-82-node-loop.onnx"  # before the leaner Loop body
ISSUE14_SPEEDUP = 1.8  # new / old, batch 1 and 64, length 20
ISSUE14_BATCHES = (1, 64)
MEMORY_ROWS = (128, 512, 1024)
MEMORY_BATCHES = (1, 32)
THREAD_BATCHES = (1, 8, 32, 64)  # intra-op thread counts against one thread
ENGINES = ("savedmodel", "onnx-dynamic", "onnx-fixed")
CHECK_TOLERANCE = 1e-4


def matmul_rate(threads: int, size: int = 512, seconds: float = 1.0) -> float:
    """float32 FLOP/s of one [size, size] x [size, size] product in onnxruntime (MLAS GEMM)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), _session_options(threads),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal((size, size), dtype=np.float32) for n in ("a", "b")}
    session.run(None, feeds)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / float(np.median(times))


def _session_options(threads: int):
    from ntm.serving.runtime import RuntimeOptions

    return RuntimeOptions(intra_op_threads=threads).session_options()


def build_model(run_dir: Path | None, small: bool, scratch: Path):
    """(NTM, ModelConfig, Task, what it is): a trained run's model; by default the bundled
    copy model's trained weights, recovered from its ONNX file into ``scratch`` (random
    weights can hit denormals and time differently); ``small``: a fresh tiny copy NTM."""
    from ntm.model.config import ModelConfig
    from ntm.contract.tasks import get_task
    from ntm.model.machine import NTM
    from ntm.training.runs import Run

    if small:
        task = get_task("copy")
        config = ModelConfig(input_size=task.input_size, output_size=task.output_size,
                             memory_size=16, memory_width=8, controller_size=16)
        return NTM(config, seed=0), config, task, "fresh tiny copy NTM (seed 0)"
    described = str(run_dir)
    if run_dir is None:
        from ntm.export.recover import recover
        from ntm.serving.models import bundled_models

        run_dir = scratch / "bundled-copy"
        recover(bundled_models()["copy"], run_dir)
        described = "the bundled copy model (weights recovered from ntm/pretrained/copy.onnx)"
    run = Run.load(run_dir)
    return run.model, run.model_config, run.task, described


def onnx_engine(proto, threads: int, memory_size: int | None = None):
    """forward(x) -> (probabilities, attention) for an ONNX model (proto or path), on
    onnxruntime; with ``memory_size`` rows when given."""
    import onnxruntime as ort

    model = proto if isinstance(proto, (str, Path)) else proto.SerializeToString()
    session = ort.InferenceSession(str(model) if isinstance(model, Path) else model,
                                   _session_options(threads), providers=["CPUExecutionProvider"])
    feeds = {} if memory_size is None else {"memory_size": np.array([memory_size], np.int32)}
    return lambda x: session.run(["probabilities", "attention"], {"inputs": x, **feeds})


def memory_cost(model_path, baseline_path, rows, batches, repeats: int, threads: int,
                seed: int) -> list[dict]:
    """us per step of a length-20 copy at each memory size: two timings per batch size, each
    interleaved in shuffled order.

    ``timing: "before"``: the model at its trained rows against the baseline model (the same
    weights as bundled before memory could grow); ``ratio`` = time / baseline time.
    ``timing: "rows"``: every memory size against each other; ``ratio`` = time / time at the
    trained rows. Kept apart because a run over a large memory leaves the caches cold for
    whatever runs next, which would tax the small-memory comparison.
    """
    from ntm.contract.tasks import Difficulty, get_task

    task = get_task("copy")
    grown = {n: onnx_engine(model_path, threads, n) for n in rows}
    pair = {"trained rows": grown[rows[0]], "baseline": onnx_engine(baseline_path, threads)}
    out = []
    for batch in batches:
        x = task.fixed_batch(np.random.default_rng(seed), batch, Difficulty(20)).inputs
        for timing, engines, reference in (("before", pair, "baseline"),
                                           ("rows", grown, rows[0])):
            times = time_engines(engines, x, repeats, shuffle=True)
            base = float(np.median(times[reference]))
            for name, t in times.items():
                median = float(np.median(t))
                out.append({"timing": timing, "engine": str(name), "batch": batch,
                            "memory_size": int(engines[name](x)[1].shape[-1]),
                            "us_per_step": round(median / x.shape[1] * 1e6, 2),
                            "ratio": round(median / base, 3)})
    return out


def against_before(model_path, before_path, batches, repeats: int, threads: int,
                   seed: int) -> list[dict]:
    """Length-20 copy through the model and the model as it was with its 82-node Loop body, calls
    interleaved in shuffled order; ``speedup`` = before's time / the model's time."""
    import onnx

    from ntm.contract.tasks import Difficulty, get_task

    task = get_task("copy")
    engines = {"now": onnx_engine(model_path, threads),
               "82-node Loop": onnx_engine(before_path, threads)}
    nodes = {"now": nodes_per_step(onnx.load(str(model_path)), None),
             "82-node Loop": nodes_per_step(onnx.load(str(before_path)), None)}
    out = []
    for batch in batches:
        x = task.fixed_batch(np.random.default_rng(seed), batch, Difficulty(20)).inputs
        diff = float(np.abs(engines["now"](x)[0] - engines["82-node Loop"](x)[0]).max())
        times = time_engines(engines, x, repeats, shuffle=True)
        before = float(np.median(times["82-node Loop"]))
        for name, t in times.items():
            median = float(np.median(t))
            out.append({"engine": name, "batch": batch, "loop_body_nodes": nodes[name],
                        "median_ms": round(median * 1e3, 4),
                        "us_per_step": round(median / x.shape[1] * 1e6, 2),
                        "speedup": round(before / median, 3), "max_abs_diff": diff})
    return out


def thread_counts(model_path, batches, counts, repeats: int, seed: int) -> list[dict]:
    """Length-20 copy through one model on sessions with each intra-op thread count, calls
    interleaved in shuffled order; ``speedup`` = the 1-thread time / this time. The Loop-body rewrites'
    "threads planned per batch size" is worth building only where more threads pay."""
    from ntm.contract.tasks import Difficulty, get_task

    task = get_task("copy")
    engines = {f"{n} thread{'s' if n > 1 else ''}": onnx_engine(model_path, n) for n in counts}
    one = next(iter(engines))
    out = []
    for batch in batches:
        x = task.fixed_batch(np.random.default_rng(seed), batch, Difficulty(20)).inputs
        times = time_engines(engines, x, repeats, shuffle=True)
        base = float(np.median(times[one]))
        for (name, t), threads in zip(times.items(), counts):
            median = float(np.median(t))
            out.append({"threads": threads, "engine": name, "batch": batch,
                        "median_ms": round(median * 1e3, 4), "speedup": round(base / median, 3)})
    return out


def loop_rewrite_targets(rows: list[dict], before: list[dict]) -> dict:
    """The Loop-body rewrites' bars: >= 1.8x the old model at batch 1 and 64; dynamic ONNX >= the SavedModel at
    every length and batch measured."""
    out = {}
    for batch in sorted({b["batch"] for b in before}):
        value = next(b["speedup"] for b in before
                     if b["batch"] == batch and b["engine"] == "now")
        out[f"speedup_vs_before_batch{batch}"] = {
            "target": ISSUE14_SPEEDUP, "measured": value, "met": value >= ISSUE14_SPEEDUP}
    dynamic = [r["speedup_vs_savedmodel"] for r in rows if r["engine"] == "onnx-dynamic"]
    worst = min(dynamic) if dynamic else None
    out["dynamic_vs_savedmodel_worst"] = {"target": 1.0, "measured": worst,
                                          "met": None if worst is None else worst >= 1.0}
    return out


def nodes_per_step(proto, time_steps: int | None) -> float:
    """ONNX nodes executed per time step: the Loop body's size, or (fixed) nodes / steps."""
    if time_steps is None:
        loops = [n for n in proto.graph.node if n.op_type == "Loop"]
        return float(len(loops[0].attribute[0].g.node)) if loops else float("nan")
    return len(proto.graph.node) / time_steps


def time_engines(engines: dict, x: np.ndarray, repeats: int,
                 shuffle: bool = False) -> dict[str, list[float]]:
    """Interleaved timing: every round calls each engine once on the same input (in a fresh
    random order each round with ``shuffle``, so no engine always follows the same one: one
    that works on a large memory leaves the caches cold for whichever runs next)."""
    for forward in engines.values():
        for _ in range(2):
            forward(x)
    times: dict[str, list[float]] = {name: [] for name in engines}
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        order = list(engines.items())
        if shuffle:
            order = [order[i] for i in rng.permutation(len(order))]
        for name, forward in order:
            start = time.perf_counter()
            forward(x)
            times[name].append(time.perf_counter() - start)
    return times


def run_benchmark(args) -> dict:
    """Every table of the benchmark; the recovered weights and exports live in a scratch
    directory removed on return."""
    with tempfile.TemporaryDirectory() as scratch:
        return _measure(args, Path(scratch))


def _measure(args, scratch: Path) -> dict:
    quiet_tensorflow(args.threads)
    import tensorflow as tf

    from ntm.export.signatures import ExportModule, RowsTable
    from ntm.export.writers import convert_to_onnx, write_savedmodel
    from ntm.model.flops import flops_per_step
    from ntm.contract.tasks import Difficulty

    model, config, task, described = build_model(args.run, args.small, scratch)
    table = RowsTable.for_task(task, config.memory_size)
    flops_step = flops_per_step(config)
    peak = matmul_rate(args.threads, size=128 if args.small else 512,
                       seconds=0.2 if args.small else 2.0)
    rng = np.random.default_rng(args.seed)
    rows, graph = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        write_savedmodel(ExportModule(model, None, rows=table), Path(tmp) / "savedmodel")
        loaded = tf.saved_model.load(str(Path(tmp) / "savedmodel")).signatures["with_memory_size"]

        def savedmodel(x):
            out = loaded(inputs=tf.constant(x), memory_size=tf.constant([config.memory_size]))
            return out["probabilities"].numpy(), out["attention"].numpy()

        dynamic_proto = convert_to_onnx(ExportModule(model, None, rows=table), args.opset)
        dynamic = onnx_engine(dynamic_proto, args.threads)
        graph["onnx-dynamic"] = {"nodes_per_step": nodes_per_step(dynamic_proto, None)}
        for length in args.lengths:
            difficulty = Difficulty(length)
            steps = task.time_steps(difficulty)
            build_start = time.perf_counter()
            fixed_proto = convert_to_onnx(ExportModule(model, steps, rows=table), args.opset)
            fixed = onnx_engine(fixed_proto, args.threads)
            graph[f"onnx-fixed-{steps}"] = {
                "nodes_per_step": round(nodes_per_step(fixed_proto, steps), 1),
                "convert_seconds": round(time.perf_counter() - build_start, 1)}
            engines = {"savedmodel": savedmodel, "onnx-dynamic": dynamic, "onnx-fixed": fixed}
            for batch in args.batches:
                x = task.fixed_batch(rng, batch, difficulty).inputs
                reference = savedmodel(x)[0]
                for name in ("onnx-dynamic", "onnx-fixed"):
                    diff = float(np.abs(engines[name](x)[0] - reference).max())
                    if not diff <= CHECK_TOLERANCE:
                        raise SystemExit(f"{name} differs from the SavedModel by {diff:.3g} "
                                         f"at length {length}, batch {batch}")
                # Shuffled like every other table here: in a fixed order the dynamic ONNX
                # model always ran right after TensorFlow and paid for what it leaves behind.
                times = time_engines(engines, x, args.repeats, shuffle=True)
                base = float(np.median(times["savedmodel"]))
                for name in ENGINES:
                    median = float(np.median(times[name]))
                    achieved = flops_step * steps * batch / median
                    rows.append({
                        "engine": name, "length": length, "batch": batch, "time_steps": steps,
                        "median_ms": round(median * 1e3, 4),
                        "p90_ms": round(float(np.percentile(times[name], 90)) * 1e3, 4),
                        "us_per_step": round(median / steps * 1e6, 2),
                        "sequences_per_s": round(batch / median, 1),
                        "speedup_vs_savedmodel": round(base / median, 2),
                        "gflops": round(achieved / 1e9, 3),
                        "fraction_of_matmul": round(achieved / peak, 4),
                    })
    if args.small:  # the code path only: the fresh tiny model against itself at 16 rows
        with tempfile.TemporaryDirectory() as tmp:
            import onnx

            path = Path(tmp) / "tiny.onnx"
            onnx.save(dynamic_proto, str(path))
            memory = memory_cost(path, path, (16, 32), (1, 2), args.repeats, args.threads,
                                 args.seed)
            before = against_before(path, path, (1, 2), args.repeats, args.threads, args.seed)
            threads = thread_counts(path, (1, 2), (1, 2), args.repeats, args.seed)
    else:
        from ntm.serving.models import bundled_models

        memory = memory_cost(bundled_models()["copy"], BASELINE, MEMORY_ROWS, MEMORY_BATCHES,
                             args.repeats, args.threads, args.seed)
        before = against_before(bundled_models()["copy"], BEFORE_REWRITES, ISSUE14_BATCHES,
                                args.repeats, args.threads, args.seed)
        threads = thread_counts(bundled_models()["copy"], THREAD_BATCHES,
                                tuple(range(1, (os.cpu_count() or 1) + 1)), args.repeats,
                                args.seed)
    return {
        "benchmark": "inference",
        "memory": memory,
        "before_loop_rewrites": before,
        "thread_counts": threads,
        "loop_rewrite_targets": loop_rewrite_targets(rows, before),
        "mode": "small" if args.small else "full",
        "command": "python benchmarks/inference.py" + (" --small" if args.small else ""),
        "model": described,
        "model_config": config.to_dict(),
        "flops_per_step": flops_step,
        "matmul_gflops": round(peak / 1e9, 2),
        "threads": args.threads,
        "repeats": args.repeats,
        "graph": graph,
        "rows": rows,
        "targets": check_targets(rows),
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor()
                    or platform.machine(), "python": platform.python_version()},
        "versions": _versions(),
    }


def check_targets(rows: list[dict]) -> dict:
    """The issue's targets, each with the measured value (None when not measured)."""
    def worst_speedup(batch):
        values = [r["speedup_vs_savedmodel"] for r in rows
                  if r["batch"] == batch and r["engine"] != "savedmodel"]
        return min(values) if values else None

    copy20 = [r["median_ms"] for r in rows
              if r["engine"] == "onnx-fixed" and r["length"] == 20 and r["batch"] == 1]
    measured = {"onnx_speedup_batch1": worst_speedup(1),
                "onnx_speedup_batch64": worst_speedup(64),
                "fixed_copy20_batch1_ms": copy20[0] if copy20 else None}
    out = {}
    for key, target in TARGETS.items():
        value = measured[key]
        met = None if value is None else (value <= target if key.endswith("_ms")
                                          else value >= target)
        out[key] = {"target": target, "measured": value, "met": met}
    return out


def _versions() -> dict:
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}


def markdown(r: dict) -> str:
    lines = [f"# Inference: copy, SavedModel vs dynamic ONNX vs fixed-length ONNX ({r['mode']})",
             "", f"Command: `{r['command']}`; model: {r['model']}; {r['threads']} thread(s); "
             f"median of {r['repeats']} interleaved calls.", "",
             f"FLOPs per time step per sequence: {r['flops_per_step']:,}; float32 matmul rate "
             f"measured in the same run: {r['matmul_gflops']} GFLOP/s.", "",
             "| length | batch | engine | ms / call | us / step | sequences/s | x SavedModel "
             "| GFLOP/s | of matmul |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["rows"]:
        lines.append(f"| {row['length']} | {row['batch']} | {row['engine']} | "
                     f"{row['median_ms']:.3f} | {row['us_per_step']:.1f} | "
                     f"{row['sequences_per_s']:,.0f} | {row['speedup_vs_savedmodel']:.2f} | "
                     f"{row['gflops']:.2f} | {100 * row['fraction_of_matmul']:.1f}% |")
    lines += ["", "| target | wanted | measured | met |", "| --- | --- | --- | --- |"]
    names = {"onnx_speedup_batch1": "ONNX vs SavedModel, batch 1 (worst case)",
             "onnx_speedup_batch64": "ONNX vs SavedModel, batch 64 (worst case)",
             "fixed_copy20_batch1_ms": "fixed ONNX, copy length 20 (41 steps), batch 1"}
    for key, t in r["targets"].items():
        wanted = f"<= {t['target']} ms" if key.endswith("_ms") else f">= {t['target']}x"
        met = {True: "yes", False: "no", None: "not measured"}[t["met"]]
        lines.append(f"| {names[key]} | {wanted} | {t['measured']} | {met} |")
    lines += ["", "ONNX nodes per time step: " + ", ".join(
        f"{name} {info['nodes_per_step']}" for name, info in r["graph"].items())]
    before = r.get("before_loop_rewrites", [])
    lines += ["", "## The bundled copy model against itself with its 82-node Loop body", "",
              "Length-20 copy (41 steps), same weights, calls interleaved in shuffled order "
              "(`benchmarks/baseline/copy-82-node-loop.onnx`):", "",
              "| batch | model | Loop body nodes | ms / call | us / step | speed-up |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {b['batch']} | {b['engine']} | {b['loop_body_nodes']:.0f} | "
              f"{b['median_ms']:.3f} | {b['us_per_step']:.1f} | {b['speedup']:.2f} |"
              for b in before]
    names14 = {"dynamic_vs_savedmodel_worst": "dynamic ONNX vs SavedModel (worst case above)"}
    lines += ["", "| Loop-body target | wanted | measured | met |", "| --- | --- | --- | --- |"]
    for key, t in r.get("loop_rewrite_targets", {}).items():
        name = names14.get(key, key.replace("speedup_vs_before_batch",
                                            "speed-up over the 82-node Loop, batch "))
        met = {True: "yes", False: "no", None: "not measured"}[t["met"]]
        lines.append(f"| {name} | >= {t['target']}x | {t['measured']} | {met} |")
    threads = r.get("thread_counts", [])
    lines += ["", "## Intra-op threads per batch size", "",
              "Bundled copy model, length-20 copy (41 steps), one session per thread count, "
              "calls interleaved in shuffled order:", "",
              "| batch | threads | ms / call | x 1 thread |", "| --- | --- | --- | --- |"]
    lines += [f"| {t['batch']} | {t['threads']} | {t['median_ms']:.3f} | {t['speedup']:.2f} |"
              for t in threads]
    memory = r.get("memory", [])
    lines += ["", "## Memory that grows: cost per time step", "",
              "Bundled copy model, length-20 copy (41 steps), calls interleaved in shuffled "
              "order. At its trained rows, against the model as bundled before memory could "
              "grow (`baseline`, same weights, 128 rows fixed):", "",
              "| batch | engine | rows | us / step | x baseline |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {m['batch']} | {m['engine']} | {m['memory_size']} | {m['us_per_step']:.1f} | "
              f"{m['ratio']:.2f} |" for m in memory if m["timing"] == "before"]
    lines += ["", "Each memory size, against each other:", "",
              "| batch | rows | us / step | x trained rows |", "| --- | --- | --- | --- |"]
    lines += [f"| {m['batch']} | {m['memory_size']} | {m['us_per_step']:.1f} | "
              f"{m['ratio']:.2f} |" for m in memory if m["timing"] == "rows"]
    return "\n".join(lines) + "\n"


def parse_ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tiny model, short lengths")
    parser.add_argument("--run", type=Path, default=None, help="a training run to load")
    parser.add_argument("--lengths", type=parse_ints, default=None)
    parser.add_argument("--batches", type=parse_ints, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.lengths = args.lengths or ([2, 4] if args.small else [10, 20, 50, 100])
    args.batches = args.batches or ([1, 4] if args.small else [1, 8, 64])
    args.repeats = args.repeats or (3 if args.small else 30)
    result = run_benchmark(args)
    write_results(args.out, "inference", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
