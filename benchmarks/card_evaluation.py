"""Benchmark: a bundled model's card measured on enough held-out sequences to see rare failures.

    python benchmarks/card_evaluation.py copy                   # 10,000 sequences per point
    python benchmarks/card_evaluation.py copy recall repeat-copy
    python benchmarks/card_evaluation.py copy --points 126,127 -n 40000 --no-card
    python benchmarks/card_evaluation.py copy --small           # seconds; used by the tests
    python benchmarks/card_evaluation.py ngrams --memory-size 256 --no-card  # other rows

A card measured on 100 sequences per point reads "0 bits/seq" for a model that fails one
sequence in 400. Here every point gets ``-n`` fresh sequences (10,000 by default), drawn as
``ntm evaluate --seed`` draws them (the same seed gives the same sequences, in the same order),
and run through onnxruntime: the bundled model's fused twin by default (``--engine``), with
the memory rows ``ntm.load(...).predict`` chooses for a request of that size. Each point
reports bits/seq (mean and worst), the failure rate (share of sequences with any wrong bit)
and its one-sided 95% upper bound (exact, Clopper-Pearson; with 0 failures that is
1 - 0.05^(1/n), ~3/n, the rule of three). The failed sequences are listed by their index in
the point's draw, so they can be drawn again and looked at.

Points: the task's usual ones and its quality bars' (as ``export/bundle.py`` chooses them),
plus ``EXTRA_POINTS``; ``--points`` replaces them. Writes the card's evaluation fields
(``ntm/pretrained/NAME.json`` and, rendered by ``export/bundle.py``'s ``render_card``,
``NAME.md``; every other card field kept) and ``benchmarks/results/card_evaluation-NAME.{json,md}``
with the failures and the time each point took. ``--no-card`` writes only the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.results_io import write_results  # noqa: E402

SEQUENCES = 10_000
SMALL_SEQUENCES = 300
BATCH_SIZE = 256
DATA_SEED = 1234  # ntm evaluate's default: its first sequences are the ones it scores
CONFIDENCE = 0.95
BOUND = ("one-sided 95% upper bound, exact (Clopper-Pearson); with 0 failures "
         "1 - 0.05^(1/n), about 3/n (the rule of three)")
# Points beside the task's usual ones. Copy: the last length that runs with the trained 128
# rows (126) and the first that runs with 256 (127), and one between 120 and 200: the rare
# failures seen on 400 sequences per point were at 126, 127 and 200.
EXTRA_POINTS = {"copy": "126,127,150"}
SMALL_POINTS = {"copy": "5,10", "recall": "3,6", "repeat-copy": "2x2,3x3", "ngrams": "12,30",
                "priority-sort": "4,6"}
FAILURES_LISTED = 50  # per point in the results JSON (the count is always complete)
# The fused op writes the attention output [batch, time, heads, N] even when it is not fetched
# (4.2 GB for 256 copies of length 1000 at 1024 rows): runs are cut to stay under this.
ATTENTION_BYTES = 1 << 30


def bundled_path(name: str) -> Path:
    """The bundled model's standard file (an export of the same name under exports/ does not
    replace it here: the card is the bundled model's)."""
    from ntm.serving.models import bundled_models

    found = bundled_models()
    if name not in found:
        raise SystemExit(f"no bundled model {name!r}; bundled: {', '.join(sorted(found))}")
    return found[name]


def default_points(task, name: str) -> list:
    """The task's usual points, its bars' and ``EXTRA_POINTS``, once each, by length (then
    repeats)."""
    from ntm.training.evaluation import parse_points

    points = list(task.default_eval_points())
    points += [point for point in task.quality_bars() if point not in points]
    if name in EXTRA_POINTS:
        points += [p for p in parse_points(EXTRA_POINTS[name], task) if p not in points]
    return sorted(points, key=lambda p: (p.length, p.repeats or 0))


def run_in_pieces(runtime, inputs: np.ndarray, rows: int) -> np.ndarray:
    """Probabilities of ``inputs`` [batch, time, in] with ``rows`` memory rows, in runs whose
    attention output stays under ``ATTENTION_BYTES``."""
    batch, time_steps, _ = inputs.shape
    per_sequence = time_steps * runtime.num_heads * rows * 4
    step = max(1, min(batch, ATTENTION_BYTES // per_sequence))
    return np.concatenate([runtime.run_checked(inputs[i:i + step], rows, attention=False)[0]
                           for i in range(0, batch, step)])


def measure_point(runtime, point, sequences: int, seed: int, batch_size: int) -> dict:
    """One card row on ``sequences`` fresh sequences at ``point`` (and the failed ones)."""
    from ntm.contract.tasks import bit_errors
    from ntm.training.evaluation import failure_upper_bound

    task = runtime.task
    rows = runtime.memory_size_for(task.memory_rows(point))
    rng = np.random.default_rng([seed, point.length, point.repeats or 0])  # as ntm evaluate
    errors, measured = [], {}
    started = time.perf_counter()
    compute = 0.0
    remaining = sequences
    while remaining > 0:
        batch = task.fixed_batch(rng, min(batch_size, remaining), point)
        t0 = time.perf_counter()
        probabilities = run_in_pieces(runtime, batch.inputs, rows)
        compute += time.perf_counter() - t0
        errors.append(bit_errors(probabilities, batch.targets, batch.mask))
        for key, values in task.measures(probabilities, batch).items():
            measured.setdefault(key, []).append(values)
        remaining -= len(batch.inputs)
    seconds = time.perf_counter() - started
    e = np.concatenate(errors)
    row = {
        "length": point.length, "repeats": point.repeats, "sequences": int(len(e)),
        "mean_bits": float(e.mean()), "worst_bits": float(e.max()),
        "perfect_fraction": float((e == 0).mean()), "memory_size": rows,
        "measures": {k: float(np.concatenate(v).mean()) for k, v in measured.items()} or None,
        # not card fields: the results file keeps them
        "seconds": round(seconds, 2), "inference_seconds": round(compute, 2),
    }
    if task.exact_answers:  # a wrong bit is a failed answer (not so for N-grams' random bits)
        failed = np.nonzero(e > 0)[0]
        row.update({
            "failures": int(len(failed)), "failure_rate": float(len(failed) / len(e)),
            "failure_upper_95": failure_upper_bound(int(len(failed)), int(len(e)), CONFIDENCE),
            "failed": [{"index": int(i), "bits": float(e[i])} for i in failed[:FAILURES_LISTED]],
        })
    return row


CARD_ROW_FIELDS = ("length", "repeats", "sequences", "mean_bits", "worst_bits",
                   "perfect_fraction", "memory_size", "measures", "failures", "failure_rate",
                   "failure_upper_95")


def update_card(card: dict, rows: list[dict], method: dict, task) -> dict:
    """The card with its evaluation fields replaced by ``rows`` (its bars measured again at
    their points); every other field kept."""
    from ntm.contract.tasks import Difficulty

    card = dict(card)
    card["evaluation"] = [{k: r[k] for k in CARD_ROW_FIELDS if k in r} for r in rows]
    card["evaluate_command"] = method["command"]
    card["evaluation_method"] = method
    bars = []
    for point, limit in task.quality_bars().items():
        row = next((r for r in rows if Difficulty(r["length"], r["repeats"]) == point), None)
        if row is None:  # a --points run that left a bar out keeps that bar's old figure
            bars += [b for b in card.get("quality_bars", []) if b["point"] == point.label()]
            continue
        bars.append({"point": point.label(), "limit": limit, "measured": row["mean_bits"],
                     "met": row["mean_bits"] <= limit,
                     **{k: row[k] for k in ("failure_rate", "failure_upper_95") if k in row}})
    card["quality_bars"] = bars
    card["all_bars_met"] = all(b["met"] for b in bars)
    return card


def markdown(result: dict) -> str:
    lines = ["# Model cards on many held-out sequences", "",
             f"`{result['command']}`: {result['sequences']} fresh sequences per point (data seed "
             f"{result['data_seed']}, drawn as `ntm evaluate --seed {result['data_seed']}` draws "
             f"them), onnxruntime {result['onnxruntime']}, batches of {result['batch_size']}, "
             f"{result['machine']}. Failure rate: share of sequences with any wrong bit; upper "
             f"bound: {BOUND}. Seconds: the point's wall time (sequences drawn, run and scored), "
             f"with other work sharing the CPU.", ""]
    for model in result["models"]:
        lines += [f"## {model['name']} ({model['engine']} engine, {model['file']}; "
                  f"{model['seconds']:.0f} s)", ""]
        if not all("failures" in r for r in model["rows"]):
            lines += measures_table(model["rows"])
            continue
        lines += ["| point | rows | n | bits/seq | worst | failed | failure rate | 95% upper "
                  "| seconds | sequences/s | failed sequences (index: bits) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in model["rows"]:
            label = f"{r['length']}x{r['repeats']}" if r["repeats"] else str(r["length"])
            failed = ", ".join(f"{f['index']}: {f['bits']:.0f}" for f in r["failed"][:8])
            if r["failures"] > 8:
                failed += ", ..."
            lines.append(f"| {label} | {r['memory_size']} | {r['sequences']} | "
                         f"{r['mean_bits']:.4f} | {r['worst_bits']:.0f} | {r['failures']} | "
                         f"{100 * r['failure_rate']:.2f}% | {100 * r['failure_upper_95']:.3f}% | "
                         f"{r['seconds']:.1f} | {r['sequences'] / r['seconds']:.0f} | "
                         f"{failed} |")
        lines.append("")
    return "\n".join(lines)


def measures_table(rows: list[dict]) -> list[str]:
    """A model whose wrong bits are no failures (N-grams): its own measures per point."""
    names = list(dict.fromkeys(k for r in rows for k in (r["measures"] or {})))
    lines = ["| point | rows | n | bits/seq wrong | " + " | ".join(names)
             + " | seconds | sequences/s |", "| --- " * (len(names) + 6) + "|"]
    for r in rows:
        cells = " | ".join(f"{(r['measures'] or {}).get(k, float('nan')):.3f}" for k in names)
        lines.append(f"| {r['length']} | {r['memory_size']} | {r['sequences']} | "
                     f"{r['mean_bits']:.3f} | {cells} | {r['seconds']:.1f} | "
                     f"{r['sequences'] / r['seconds']:.0f} |")
    return lines + [""]


def command_line(args, defaults: dict) -> str:
    parts = ["python benchmarks/card_evaluation.py", *args.models]
    for flag, value in (("--points", args.points), ("-n", args.sequences),
                        ("--engine", args.engine), ("--memory-size", args.memory_size),
                        ("--seed", args.seed),
                        ("--batch-size", args.batch_size)):
        if value is not None and value != defaults.get(flag):
            parts.append(f"{flag} {value}")
    if args.no_card:
        parts.append("--no-card")
    if args.small:
        parts.append("--small")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="bundled models, e.g. copy recall repeat-copy")
    parser.add_argument("--points", default=None,
                        help="e.g. 20,126,200 (repeat-copy: 10x10,20x10) [the task's usual "
                             "points and its bars', and EXTRA_POINTS]")
    parser.add_argument("-n", "--sequences", type=int, default=None,
                        help=f"fresh sequences per point [{SEQUENCES}; small: {SMALL_SEQUENCES}]")
    parser.add_argument("--engine", choices=("fused", "standard"), default="fused",
                        help="fused: the model's twin on the ntm_ops kernel (ntm build-kernel); "
                             "standard: ONNX operators only")
    parser.add_argument("--memory-size", type=int, default=None,
                        help="memory rows for every point, as ntm predict --memory-size (with "
                             "--no-card: a card measures the rows the model chooses) [the "
                             "model's choice per point]")
    parser.add_argument("--seed", type=int, default=DATA_SEED, help="data seed")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--no-card", action="store_true",
                        help="write only the results, not the model card")
    parser.add_argument("--cards", type=Path, default=None,
                        help="where NAME.json and NAME.md are read and written [ntm/pretrained; "
                             "small: --out, the bundled card copied there first]")
    parser.add_argument("--small", action="store_true", help="two short points (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.sequences is not None and args.sequences < 1:
        parser.error("-n must be at least 1")
    if args.memory_size is not None and (args.memory_size < 1 or not args.no_card):
        parser.error("--memory-size: a positive number of rows, with --no-card (a card measures "
                     "the rows the model chooses)")

    import onnxruntime

    from ntm.contract.tasks import get_task
    from ntm.export.bundle import PRETRAINED, render_card
    from ntm.files import write_json_atomic, write_text_atomic
    from ntm.serving.runtime import ModelRuntime
    from ntm.serving.settings import RuntimeOptions
    from ntm.training.evaluation import parse_points

    sequences = args.sequences or (SMALL_SEQUENCES if args.small else SEQUENCES)
    cards = args.cards or (args.out if args.small else PRETRAINED)
    command = command_line(args, {"--engine": "fused", "--seed": DATA_SEED,
                                  "--batch-size": BATCH_SIZE})
    models = []
    for name in args.models:
        task = get_task(name)
        try:
            points = parse_points(args.points or SMALL_POINTS[name], task) if \
                args.points or args.small else default_points(task, name)
        except ValueError as err:
            parser.error(f"--points: {err}")
        runtime = ModelRuntime(bundled_path(name), options=RuntimeOptions(
            engine=args.engine, memory_size=args.memory_size))
        started = time.perf_counter()
        rows = []
        for point in points:
            row = measure_point(runtime, point, sequences, args.seed, args.batch_size)
            rows.append(row)
            outcome = (f"{row['failures']}/{row['sequences']} failed" if "failures" in row
                       else ", ".join(f"{k} {v:.3f}" for k, v in (row["measures"] or {}).items()))
            print(f"{name} {point.label()}: {row['mean_bits']:.4f} bits/seq, {outcome}, "
                  f"{row['seconds']:.1f} s", file=sys.stderr, flush=True)
        seconds = time.perf_counter() - started
        method = {"command": command, "engine": runtime.engine, "file": runtime.path.name,
                  "onnxruntime": onnxruntime.__version__, "data_seed": args.seed,
                  "sequences_per_point": sequences, "batch_size": args.batch_size,
                  "rows": "chosen per point as ntm.load(...).predict chooses them",
                  "failure_bound": BOUND, "seconds": round(seconds, 1)}
        models.append({"name": name, "engine": runtime.engine, "file": runtime.path.name,
                       "seconds": round(seconds, 1), "rows": rows})
        runtime.close()
        if args.no_card:
            continue
        card_path = cards / f"{name}.json"
        if not card_path.is_file():
            if not args.small:
                raise SystemExit(f"{card_path}: no card to update")
            cards.mkdir(parents=True, exist_ok=True)
            shutil.copy(PRETRAINED / f"{name}.json", card_path)
        card = update_card(json.loads(card_path.read_text()), rows, method, task)
        write_json_atomic(card_path, card, trailing_newline=True)
        write_text_atomic(cards / f"{name}.md", render_card(card, task))
    result = {"benchmark": "card_evaluation", "mode": "small" if args.small else "full",
              "command": command, "sequences": sequences, "data_seed": args.seed,
              "batch_size": args.batch_size, "onnxruntime": onnxruntime.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "models": models}
    rows = "" if args.memory_size is None else f"-rows{args.memory_size}"
    write_results(args.out, "card_evaluation-" + "-".join(args.models) + rows, args.small,
                  result, markdown(result))


if __name__ == "__main__":
    main()
