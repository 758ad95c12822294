"""Benchmark: the fused kernel (``ntm_ops``) against the standard ONNX model, bundled models.

Parity: every bundled model against its fused twin on the same inputs (fresh task sequences):
lengths 1 to 1000, memory 128 to 2048 rows, batch 1 to 64, and stateful runs in three chunks
on the fused model against one shot on the standard one; the bars are 1e-5 on probabilities
and 1e-4 on attention.

Speed: the bundled copy model, one onnxruntime thread, the engines taking turns in one process
(drift on a shared machine hits both alike), median per engine: length-20 copy at batch 1 and
64, length-1000 copy (1024 rows) at batch 1. Two ways, at least 30 turns and 5 s each: one call
per turn (each call starts with the other engine's data in the caches: the kernel, bound by
reading its weights from cache at batch 1, loses most by it), and ten calls per turn with the
first dropped (each engine's steady state, as a server that runs one engine sees it). Beside each: microseconds per time
step, and the fused kernel's achieved FLOP/s (``ntm.model.flops``) as a share of a float32
matrix product's rate measured in the same run (MLAS GEMM, one thread) — the distance to the
machine's limit.

    python benchmarks/fused_kernel.py            # the whole grid; a few minutes
    python benchmarks/fused_kernel.py --small    # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.inference import matmul_rate  # noqa: E402
from benchmarks.results_io import write_results  # noqa: E402

PROBABILITY_BAR, ATTENTION_BAR = 1e-5, 1e-4
SPEED_BARS = {("copy20", 1): 8.0, ("copy20", 64): 2.5, ("copy1000", 1): 8.0}
RUN = ["probabilities", "attention"]


def one_thread_session(path: Path, kernel: Path | bool = False):
    """An onnxruntime session of ``path`` on one thread; ``kernel``: with the fused kernel
    registered (True: the library ntm finds; a path: that build)."""
    import onnxruntime as ort

    from ntm.contract.kernel_library import register

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if kernel:
        register(options, None if kernel is True else kernel)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def sessions(task: str):
    """(standard, fused) onnxruntime sessions of a bundled model and its twin, one thread."""
    from ntm.serving.models import bundled_models, fused_twin

    path = bundled_models()[task]
    return one_thread_session(path), one_thread_session(fused_twin(path), kernel=True)


def inputs(task: str, length: int, batch: int, seed: int) -> np.ndarray:
    from ntm.contract.tasks import Difficulty, get_task

    t = get_task(task)
    rng = np.random.default_rng(seed)
    repeats = None if t.train_repeats is None else t.train_repeats[1]
    return np.stack([t.sequence(rng, Difficulty(length, repeats))[0]
                     for _ in range(batch)]).astype(np.float32)


def parity_grid(small: bool) -> list[tuple]:
    """(task, length, batch, rows) points: every length past training, every rows bucket."""
    if small:
        return [("copy", 20, 2, 128), ("recall", 4, 2, 128), ("repeat-copy", 5, 2, 128)]
    return ([("copy", n, b, r) for n, b, r in [(1, 1, 128), (20, 1, 128), (20, 64, 128),
                                               (120, 16, 256), (250, 4, 512), (500, 2, 1024),
                                               (1000, 1, 1024), (1000, 1, 2048), (60, 8, 2048)]]
            + [("recall", n, b, r) for n, b, r in [(2, 64, 128), (6, 16, 128), (12, 8, 256),
                                                   (30, 2, 512)]]
            + [("repeat-copy", n, b, r) for n, b, r in [(5, 64, 128), (10, 8, 256),
                                                        (20, 2, 512)]])


def parity(small: bool) -> dict:
    """Fused against standard at every point; beside it, each engine against the same model
    computed in float64 (``ntm.kernel.reference``): each engine's own float32 error, where
    fused - standard is the two errors together."""
    from ntm.kernel.reference import forward, read_fused_model
    from ntm.serving.models import bundled_models, fused_twin

    rows_out, worst_p, worst_a = [], 0.0, 0.0
    opened, references = {}, {}
    for task, length, batch, rows in parity_grid(small):
        standard, fused = opened.setdefault(task, sessions(task))
        x = inputs(task, length, batch, seed=length * 7 + batch)
        feeds = {"inputs": x, "memory_size": np.array([rows], np.int32)}
        p_s, a_s = standard.run(RUN, feeds)
        p_f, a_f = fused.run(RUN, feeds)
        dp, da = float(np.abs(p_f - p_s).max()), float(np.abs(a_f - a_s).max())
        worst_p, worst_a = max(worst_p, dp), max(worst_a, da)
        point = {"task": task, "length": length, "batch": batch, "rows": rows,
                 "time_steps": x.shape[1], "probabilities": dp, "attention": da}
        model = references.setdefault(task, read_fused_model(fused_twin(bundled_models()[task])))
        p_r, a_r = forward(model, x, rows)
        point.update({"standard_vs_float64": {"probabilities": float(np.abs(p_s - p_r).max()),
                                              "attention": float(np.abs(a_s - a_r).max())},
                      "fused_vs_float64": {"probabilities": float(np.abs(p_f - p_r).max()),
                                           "attention": float(np.abs(a_f - a_r).max())}})
        rows_out.append(point)
    # stateful: three chunks on the fused model, one shot on the standard
    chunks = []
    for task, length in ([("copy", 20)] if small else [("copy", 20), ("copy", 300),
                                                        ("recall", 6), ("repeat-copy", 8)]):
        standard, fused = opened.setdefault(task, sessions(task))
        x = inputs(task, length, 4, seed=length)
        rows = 128 if x.shape[1] < 250 else 512
        whole = standard.run(["probabilities"], {"inputs": x, "memory_size": np.array([rows],
                                                                                      np.int32)})[0]
        cuts = [0, x.shape[1] // 3, 2 * x.shape[1] // 3, x.shape[1]]
        state, parts = np.zeros([1, 0], np.float32), []
        for k in range(3):
            p, _, state = fused.run(RUN + ["state_out"], {
                "inputs": x[:, cuts[k]:cuts[k + 1]], "memory_size": np.array([rows], np.int32),
                "sequence_start": np.array([int(k == 0)], np.int32), "state": state})
            parts.append(p)
        d = float(np.abs(np.concatenate(parts, axis=1) - whole).max())
        worst_p = max(worst_p, d)
        chunks.append({"task": task, "length": length, "rows": rows, "probabilities": d})
    return {"points": rows_out, "chunks": chunks, "worst_probabilities": worst_p,
            "worst_attention": worst_a,
            "passed": worst_p <= PROBABILITY_BAR and worst_a <= ATTENTION_BAR}


BLOCK = 10  # calls in a row per engine for its steady state


def interleaved(standard, fused, feeds: dict, rounds: int, seconds: float, block: int
                ) -> dict[str, list[float]]:
    """{engine: seconds per call}: the engines take turns, ``block`` calls each, for at least
    ``rounds`` turns and ``seconds``. block 1: every call follows the other engine's, so it
    starts with that engine's data in the caches. block > 1: the first call of each turn is
    dropped, and the rest run as a server that uses one engine runs them."""
    times = {"standard": [], "fused": []}
    deadline = time.perf_counter() + seconds
    turns = 0
    while turns < rounds or time.perf_counter() < deadline:
        for label, s in (("standard", standard), ("fused", fused)):
            for k in range(block):
                start = time.perf_counter()
                s.run(RUN, feeds)
                if block == 1 or k > 0:
                    times[label].append(time.perf_counter() - start)
        turns += 1
    return times


def speed(small: bool, rounds: int, seconds: float) -> list[dict]:
    from ntm.model.config import ModelConfig
    from ntm.model.flops import flops_per_step
    from ntm.serving.models import model_card

    standard, fused = sessions("copy")
    config = model_card("copy").get("model") or {}
    cases = [("copy20", 20, 1, 128), ("copy20", 20, 64, 128), ("copy1000", 1000, 1, 1024)]
    if small:
        cases = [("copy20", 20, 1, 128), ("copy20", 20, 4, 128)]
    rows = []
    for name, length, batch, n in cases:
        x = inputs("copy", length, batch, seed=11)
        feeds = {"inputs": x, "memory_size": np.array([n], np.int32)}
        for _ in range(3):  # warm up, interleaved as measured
            for s in (standard, fused):
                s.run(RUN, feeds)
        times = interleaved(standard, fused, feeds, rounds, seconds, block=1)
        steady = interleaved(standard, fused, feeds, rounds, seconds, block=BLOCK)
        steps = x.shape[1]
        med = {k: float(np.median(v)) for k, v in times.items()}
        try:
            flops = flops_per_step(ModelConfig.from_dict({**config, "memory_size": n}))
        except Exception:  # a card without the model config: no FLOP count
            flops = None
        rows.append({
            "case": name, "length": length, "batch": batch, "rows": n, "time_steps": steps,
            "rounds": len(times["fused"]),
            "standard_ms": med["standard"] * 1e3, "fused_ms": med["fused"] * 1e3,
            "standard_us_per_step": med["standard"] / steps * 1e6,
            "fused_us_per_step": med["fused"] / steps * 1e6,
            "speedup": med["standard"] / med["fused"],
            "fused_us_per_step_steady": float(np.median(steady["fused"])) / steps * 1e6,
            "speedup_steady": float(np.median(steady["standard"]) / np.median(steady["fused"])),
            "bar": SPEED_BARS.get((name, batch)),
            "flops_per_step": None if flops is None else flops * batch,
            "fused_gflops": None if flops is None else flops * batch * steps / med["fused"] / 1e9,
        })
    return rows


def markdown(result: dict) -> str:
    par, rate = result["parity"], result["matmul_gflops"]
    own = {engine: [max(p[f"{engine}_vs_float64"][k] for p in par["points"])
                    for k in ("probabilities", "attention")] for engine in ("standard", "fused")}
    lines = ["# The fused kernel against the standard ONNX model", "",
             f"`python benchmarks/fused_kernel.py{' --small' if result['small'] else ''}`; "
             f"{result['cpu']}, {result['cpu_count']} CPUs, onnxruntime "
             f"{result['onnxruntime']}, one thread, calls interleaved: at least "
             f"{result['rounds']} turns and {result.get('seconds', 0):g} s per case and way, median. "
             f"Matrix product (MLAS, one thread): {rate:.1f} GFLOP/s.", "",
             "## Speed (bundled copy model)", "",
             f"Two ways to take turns: one call each (every call starts with the other engine's "
             f"data in the caches), and {BLOCK} calls each with the first dropped (each "
             f"engine's steady state, as a server running one engine sees it).", "",
             "| case | batch | rows | calls timed | standard µs/step | fused µs/step | fused / "
             f"standard, one call each | fused µs/step, {BLOCK} each | fused / standard, "
             f"{BLOCK} each | bar | fused GFLOP/s | share of the matrix-product rate |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["speed"]:
        g = r["fused_gflops"]
        bar = "" if r["bar"] is None else f">= {r['bar']:g}x"
        lines.append(
            f"| {r['case']} | {r['batch']} | {r['rows']} | {r['rounds']} | "
            f"{r['standard_us_per_step']:.1f} | "
            f"{r['fused_us_per_step']:.2f} | **{r['speedup']:.1f}x** | "
            f"{r['fused_us_per_step_steady']:.2f} | **{r['speedup_steady']:.1f}x** | {bar} | "
            f"{'' if g is None else f'{g:.1f}'} | {'' if g is None else f'{g / rate:.0%}'} |")
    lines += ["", "## Parity (max |fused - standard|)", "",
              f"Worst: probabilities {par['worst_probabilities']:.1e} (bar {PROBABILITY_BAR:g}), "
              f"attention {par['worst_attention']:.1e} (bar {ATTENTION_BAR:g}): "
              f"**{'passed' if par['passed'] else 'FAILED'}**.", "",
              "Beside each, each engine against the same model computed in float64 "
              "(`ntm.kernel.reference`): its own float32 error. Where the recurrence amplifies "
              "rounding (long copies: a sharpened weighting near a tie between two rows), the "
              "standard model's own error alone is above the attention bar, and fused - "
              "standard is both errors together.", "",
              f"Worst own error, probabilities / attention: standard {own['standard'][0]:.1e} / "
              f"{own['standard'][1]:.1e}, fused {own['fused'][0]:.1e} / {own['fused'][1]:.1e}.",
              "",
              "| task | length | batch | rows | steps | probabilities | attention | "
              "standard vs float64 (p / a) | fused vs float64 (p / a) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in par["points"]:
        s64, f64 = p["standard_vs_float64"], p["fused_vs_float64"]
        lines.append(f"| {p['task']} | {p['length']} | {p['batch']} | {p['rows']} | "
                     f"{p['time_steps']} | {p['probabilities']:.1e} | {p['attention']:.1e} | "
                     f"{s64['probabilities']:.1e} / {s64['attention']:.1e} | "
                     f"{f64['probabilities']:.1e} / {f64['attention']:.1e} |")
    lines += ["", "Stateful, three chunks (fused) against one shot (standard), batch 4:", "",
              "| task | length | rows | probabilities |", "| --- | --- | --- | --- |"]
    for c in par["chunks"]:
        lines.append(f"| {c['task']} | {c['length']} | {c['rows']} | {c['probabilities']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="seconds; for the tests")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per case, at least [default: 30; small: 3]")
    parser.add_argument("--seconds", type=float, default=None,
                        help="and at least this long per case, so a case of short calls takes "
                             "hundreds of rounds [default: 5; small: 0]")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    import onnxruntime

    rounds = args.rounds or (3 if args.small else 30)
    seconds = args.seconds if args.seconds is not None else (0.0 if args.small else 5.0)
    result = {"benchmark": "fused_kernel", "small": args.small, "rounds": rounds,
              "seconds": seconds, "cpu": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "onnxruntime": onnxruntime.__version__}
    result["speed"] = speed(args.small, rounds, seconds)
    # after the cases: a second of GEMM must not run just before the first one
    result["matmul_gflops"] = matmul_rate(1, seconds=0.2 if args.small else 1.0) / 1e9
    result["parity"] = parity(args.small)
    write_results(args.out, "fused_kernel", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
