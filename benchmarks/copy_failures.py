"""Benchmark: how copy runs fail far past their training length, sequence by sequence.

Fresh sequences of one length (1000 by default, the memory grown as ``ntm evaluate`` grows it)
run through each run's latest checkpoint with TensorFlow; every imperfect sequence is put in
one of the ways copy was seen to fail at length 1000 (seeds 2 and 5 of the seed sweep):

- ``first outputs``: every wrong bit is in the first few outputs. Those vectors were not read
  back from memory: the controller carried them in its own state, which fades over a long
  input. Counted beside it: sequences whose write head came back over the first vector's row
  during the input (``first row rewritten``), leaving the controller's state the only place
  the first vector is kept (a model can still hold it there over 1000 steps: the bundled one
  does).
- ``read moved``: the read head, parked on one row while the input arrives, moved to another
  before the delimiter, so the output phase starts one row off and every output is wrong.
- ``other``: anything else.

A second table probes the trigger of the second kind: sequences whose items are all non-zero
but for a run of K all-zero items in the middle of the input (length 200 by default). An
all-zero item is what the output phase feeds in, and random training data almost never has
two in a row (a chance of ~1 in 65,536 per step), so a model may read a run of them as "the
input has ended" and move its parked read head. ``--zero-runs 1,2,3,5`` sets the Ks.

    python benchmarks/copy_failures.py runs/seeds/copy-seed2 runs/seeds/copy-seed5
    python benchmarks/copy_failures.py RUN --length 500 -n 100
    python benchmarks/copy_failures.py RUN --zero-runs 2,3 --probe-length 500
    python benchmarks/copy_failures.py RUN --small        # seconds; used by the test suite
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.results_io import write_results  # noqa: E402

FIRST_OUTPUTS = 2  # "first outputs": all errors within this many leading outputs
SETTLE_STEPS = 4  # the read head counts as parked from this input step on
KINDS = ("first outputs", "read moved", "other")


def head_path(weights: np.ndarray) -> np.ndarray:
    """The row each step's weighting puts most weight on: [time, N] -> int [time]."""
    return np.argmax(weights, axis=-1)


def read_moved_at(read_path: np.ndarray, length: int) -> int | None:
    """The input step at which a read head parked since step ``SETTLE_STEPS`` first left its
    row (None: it stayed, or it never parked). read_path: the read head's rows, input steps
    0..length (the delimiter step included)."""
    if length <= SETTLE_STEPS:
        return None
    during = read_path[SETTLE_STEPS:length + 1]
    moved = np.nonzero(during != during[0])[0]
    return None if len(moved) == 0 else int(moved[0]) + SETTLE_STEPS


def first_row_rewritten(write_path: np.ndarray, length: int) -> bool:
    """Whether the write head came back to the first vector's row during the input."""
    return bool(np.any(write_path[1:length] == write_path[0]))


def classify(wrong_per_output: np.ndarray, read_path: np.ndarray, length: int) -> str | None:
    """One imperfect sequence's kind of failure (None when it is perfect).

    wrong_per_output: wrong bits of each output vector [length]; read_path: the read head's
    rows over the input steps and the delimiter [length + 1].
    """
    wrong = np.nonzero(wrong_per_output)[0]
    if len(wrong) == 0:
        return None
    if wrong[-1] < FIRST_OUTPUTS:
        return "first outputs"
    if read_moved_at(read_path, length) is not None:
        return "read moved"
    return "other"


def load_copy_run(run_dir: Path):
    """The run (``ntm.training.runs.Run``, its latest checkpoint); SystemExit unless it is a copy run."""
    from ntm.training.runs import Run

    run = Run.load(run_dir)
    if run.task.name != "copy":
        raise SystemExit(f"{run_dir} is a {run.task.name} run, not a copy one")
    return run


def memory_rows(run, length: int) -> int:
    """The rows ``ntm evaluate`` gives length ``length``."""
    from ntm.contract.tasks import Difficulty
    from ntm.training.evaluation import rows_for_points

    return rows_for_points(run.task, run.model_config.memory_size)(Difficulty(length))


def run_batch(run, batch, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The model on ``batch`` with ``rows`` memory rows -> (wrong bits of each scored step
    [batch, time], each head's weighting [batch, time, heads (reads first), N])."""
    import tensorflow as tf

    out = run.model(tf.constant(batch.inputs), memory_size=rows)
    probabilities = tf.sigmoid(out.logits).numpy()
    wrong = ((probabilities > 0.5) != (batch.targets > 0.5)).sum(-1) * batch.mask
    return wrong, out.weights.numpy()


def measure(run, length: int, sequences: int, seed: int, batch_size: int) -> dict:
    from ntm.contract.tasks import Difficulty

    task, point, rows = run.task, Difficulty(length), memory_rows(run, length)
    reads = run.model_config.num_read_heads
    rng = np.random.default_rng([seed, length])
    kinds, moves, rewritten, bits = Counter(), [], 0, []
    for start in range(0, sequences, batch_size):
        batch = task.fixed_batch(rng, min(batch_size, sequences - start), point)
        wrong_steps, weights = run_batch(run, batch, rows)
        for i in range(batch.batch_size):
            wrong = wrong_steps[i, length + 1:]
            bits.append(int(wrong.sum()))
            read_path = head_path(weights[i, :length + 1, 0])
            write_path = head_path(weights[i, :length, reads])
            rewritten += first_row_rewritten(write_path, length)
            kind = classify(wrong, read_path, length)
            if kind is not None:
                kinds[kind] += 1
            if kind == "read moved":
                moves.append({"sequence": start + i, "input_step": read_moved_at(read_path, length)})
    return {"run": str(run.directory), "seed": run.train_config.seed,
            "step": int(run.state.step.numpy()),
            "length": length, "memory_rows": rows, "sequences": sequences,
            "mean_bits": float(np.mean(bits)), "perfect_fraction": float(np.mean(np.equal(bits, 0))),
            "kinds": {kind: kinds[kind] for kind in KINDS}, "first_row_rewritten": rewritten,
            "read_moves": moves}


def with_zero_run(task, rng: np.random.Generator, length: int, zeros: int):
    """A copy sequence (inputs, targets, mask) of ``length`` non-zero items but for ``zeros``
    all-zero items in the middle (rows length // 2 ...)."""
    items = rng.integers(0, 2, (length, task.bits)).astype(np.float32)
    blank = ~items.any(axis=1)
    while blank.any():  # redraw the all-zero items the dice gave
        items[blank] = rng.integers(0, 2, (int(blank.sum()), task.bits))
        blank = ~items.any(axis=1)
    middle = length // 2
    items[middle:middle + zeros] = 0.0
    return task.episode(items)


def probe_zero_runs(run, length: int, runs: list[int], sequences: int, seed: int) -> list[dict]:
    """For each K in ``runs``: how many of ``sequences`` fail, and how many see the read head
    leave its row during the input, with K all-zero items in the middle of the input."""
    from ntm.contract.tasks.base import stack_sequences

    rows = memory_rows(run, length)
    results = []
    for zeros in runs:
        rng = np.random.default_rng([seed, length, zeros])
        batch = stack_sequences(*zip(*[with_zero_run(run.task, rng, length, zeros)
                                       for _ in range(sequences)]))
        wrong_steps, weights = run_batch(run, batch, rows)
        wrong = wrong_steps.sum(-1)
        moved = sum(read_moved_at(head_path(weights[i, :length + 1, 0]), length) is not None
                    for i in range(sequences))
        results.append({"zeros": zeros, "length": length, "memory_rows": rows,
                        "sequences": sequences, "failed": int((wrong > 0).sum()),
                        "read_moved": int(moved), "mean_bits": float(wrong.mean())})
    return results


def markdown(result: dict) -> str:
    lines = ["# Copy: how runs fail far past their training length", "",
             f"`{result['command']}`. Each run's latest checkpoint, {result['rows'][0]['sequences']}"
             f" fresh sequences of length {result['rows'][0]['length']} (data seed "
             f"{result['data_seed']}). Kinds of imperfect sequences: \"first outputs\" (all errors in "
             f"the first {FIRST_OUTPUTS} outputs: carried by the controller, not read from memory), "
             f"\"read moved\" (the read head, parked during the input, left its row before the "
             f"delimiter: the output phase reads one row off), \"other\". \"First row rewritten\": "
             f"sequences whose write head came back over the first vector's row during the input.",
             "", "| run | seed | step | rows | bits/seq | perfect | first outputs | read moved "
             "(input step) | other | first row rewritten |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        steps = ", ".join(str(m["input_step"]) for m in r["read_moves"])
        k = r["kinds"]
        lines.append(f"| {r['run']} | {r['seed']} | {r['step']} | {r['memory_rows']} | "
                     f"{r['mean_bits']:.2f} | {100 * r['perfect_fraction']:.0f}% | "
                     f"{k['first outputs']} | {k['read moved']}{f' ({steps})' if steps else ''} | "
                     f"{k['other']} | {r['first_row_rewritten']} |")
    if result.get("zero_runs"):
        first = result["rows"][0]["zero_runs"][0]
        lines += ["", f"Runs of all-zero items: {first['sequences']} sequences of length "
                  f"{first['length']} ({first['memory_rows']} rows) per K, every item non-zero "
                  f"but K in a row in the middle of the input. Cells: sequences imperfect / "
                  f"read head left its row during the input.", "",
                  "| run | " + " | ".join(f"K = {k}" for k in result["zero_runs"]) + " |",
                  "| --- |" + " --- |" * len(result["zero_runs"])]
        for r in result["rows"]:
            lines.append(f"| {r['run']} | " + " | ".join(
                f"{z['failed']} / {z['read_moved']}" for z in r["zero_runs"]) + " |")
    return "\n".join(lines) + "\n"


def parse_zero_runs(parser: argparse.ArgumentParser, text: str) -> list[int]:
    """"1,2,3" -> [1, 2, 3]; "none" -> [] (no probe); anything else: a usage error."""
    if text.strip().lower() == "none":
        return []
    try:
        runs = [int(part) for part in text.split(",")]
    except ValueError:
        parser.error(f"--zero-runs: expected comma-separated counts like 1,2,3, got {text!r}")
    if any(k < 1 for k in runs):
        parser.error(f"--zero-runs: counts must be at least 1, got {text!r}")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="copy run directories")
    parser.add_argument("--length", type=int, default=None, help="[1000; small: 12]")
    parser.add_argument("-n", "--sequences", type=int, default=None, help="[50; small: 4]")
    parser.add_argument("--seed", type=int, default=1234, help="data seed")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--zero-runs", default=None,
                        help="Ks of the all-zero-run probe, e.g. 1,2,3,5 [1,2,3,5; small: 2; "
                             "none: skip it]")
    parser.add_argument("--probe-length", type=int, default=None, help="[200; small: 12]")
    parser.add_argument("--probe-sequences", type=int, default=None, help="[20; small: 4]")
    parser.add_argument("--small", action="store_true", help="a short length (tests)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    length = args.length or (12 if args.small else 1000)
    sequences = args.sequences or (4 if args.small else 50)
    zero_runs = parse_zero_runs(parser, args.zero_runs or ("2" if args.small else "1,2,3,5"))
    probe_length = args.probe_length or (12 if args.small else 200)
    probe_sequences = args.probe_sequences or (4 if args.small else 20)
    if zero_runs and max(zero_runs) > probe_length // 2:
        parser.error(f"--zero-runs: at most {probe_length // 2} zeros fit in the middle of "
                     f"--probe-length {probe_length}")
    for run_dir in args.runs:
        if not (run_dir / "config.json").is_file():
            parser.error(f"{run_dir} is not a run directory (no config.json)")
    rows = []
    for run_dir in args.runs:
        run = load_copy_run(run_dir)  # one restore serves both measurements
        row = measure(run, length, sequences, args.seed, args.batch_size)
        row["zero_runs"] = probe_zero_runs(run, probe_length, zero_runs, probe_sequences,
                                           args.seed)
        rows.append(row)
    options = [("--length", args.length), ("-n", args.sequences), ("--zero-runs", args.zero_runs),
               ("--probe-length", args.probe_length),
               ("--probe-sequences", args.probe_sequences)]
    command = "python benchmarks/copy_failures.py " + " ".join(
        [str(r) for r in args.runs] + [f"{flag} {value}" for flag, value in options if value])
    result = {"benchmark": "copy_failures", "mode": "small" if args.small else "full",
              "command": command, "data_seed": args.seed, "zero_runs": zero_runs, "rows": rows}
    write_results(args.out, "copy_failures", args.small, result, markdown(result))


if __name__ == "__main__":
    main()
