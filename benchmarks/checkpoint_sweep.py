"""Benchmark: how generalisation moves from checkpoint to checkpoint of one run.

A run's held-out error inside its training range can sit at 0 while its error beyond that
range swings from one checkpoint to the next (pytorch-ntm's copy does; REFERENCE.md). This
evaluates every checkpoint a run kept at the chosen points and, with ``--select POINT``,
picks, among the checkpoints whose held-out error inside the training range is at most
``--max-heldout``, the one with the lowest mean bits/seq there on sequences of their own (data
seed ``--select-seed``, not the table's), so the point a choice is made at and the points it is
reported at never share a sequence. ``--require POINTS`` narrows the choice further to the
checkpoints at most ``--require-max`` bits/seq at each of those points, measured on the
selection's sequences too (e.g. a model card's bars inside the training range). It writes
``results/checkpoints-NAME.{json,md}``.

    python benchmarks/checkpoint_sweep.py runs/rc-seed3 --points 10x10,20x10,10x20 \\
        --select 15x10 --require 5x5,10x10 --name repeat-copy-seed3
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.results_io import write_results  # noqa: E402


def sweep(run_dir: Path, points, select, sequences: int, seed: int, select_seed: int,
          require=()) -> list:
    """One row per checkpoint: its step, the table at ``points``, the mean at ``select`` and
    the means at ``require`` (both on the selection's sequences)."""
    import tensorflow as tf

    from ntm.training.checkpoints import TrainingState, kept_checkpoints
    from ntm.training.evaluation import evaluate, rows_for_points
    from ntm.model.machine import NTM
    from ntm.training.runs import Run
    from ntm.training.steps import make_predict_with_rows

    run = Run.load(run_dir)
    model, state = NTM(run.model_config, seed=run.train_config.seed), TrainingState()
    predict = make_predict_with_rows(model)  # one graph; each restore changes its variables
    rows_for = rows_for_points(run.task, run.model_config.memory_size, None)
    out = []
    for step, path in kept_checkpoints(run_dir).items():
        tf.train.Checkpoint(model=model, state=state).restore(path).expect_partial()
        row = {"step": step, "heldout_bits_per_seq": round(float(state.last_eval.numpy()), 3),
               "points": [r.as_dict() for r in evaluate(predict, run.task, points, sequences,
                                                         50, seed, rows_for=rows_for)]}
        if select:
            [chosen] = evaluate(predict, run.task, [select], sequences, 50, select_seed,
                                rows_for=rows_for)
            row["select_mean_bits"] = chosen.mean_bits
        if require:
            measured = evaluate(predict, run.task, require, sequences, 50, select_seed,
                                rows_for=rows_for)
            row["required_mean_bits"] = {point.label(): r.mean_bits
                                         for point, r in zip(require, measured, strict=True)}
        print(f"step {step}: " + ", ".join(f"{p['length']}x{p['repeats']} {p['mean_bits']:.2f}"
                                          if p["repeats"] else f"{p['length']} {p['mean_bits']:.2f}"
                                          for p in row["points"])
              + (f" | select {row['select_mean_bits']:.2f}" if select else ""), flush=True)
        out.append(row)
    return out


def markdown(result: dict) -> str:
    labels = result["points"]
    lines = [f"# Checkpoints of {result['run']} ({result['mode']})", "",
             f"Command: `{result['command']}`. Bits/seq (perfect sequences) on "
             f"{result['sequences']} fresh sequences per point (data seed {result['seed']})"
             + (f"; chosen by the mean at {result['select']} on sequences of its own (data "
                f"seed {result['select_seed']}) among the checkpoints at most "
                f"{result['max_heldout']} bits/seq inside the training range"
                + (f" and at most {result['require_max']} at each of "
                   f"{', '.join(result['require'])} (on the selection's sequences)"
                   if result.get("require") else "")
                + ("" if result.get("chosen_step") is not None else "; none qualified")
                if result["select"] else "") + ".", "",
             "| step | held-out (training range) | " + " | ".join(labels)
             + (f" | select: {result['select']}" if result["select"] else "")
             + "".join(f" | required: {label}" for label in result.get("require", [])) + " |",
             "| --- | --- | " + " | ".join("---" for _ in labels)
             + (" | ---" if result["select"] else "")
             + " | ---" * len(result.get("require", [])) + " |"]
    for row in result["rows"]:
        cells = [f"{p['mean_bits']:.2f} ({p['perfect_fraction']:.0%})" for p in row["points"]]
        if result["select"]:
            cells.append(f"{row['select_mean_bits']:.2f}")
        cells += [f"{row['required_mean_bits'][label]:.2f}" for label in result.get("require", [])]
        mark = " **chosen**" if row["step"] == result.get("chosen_step") else ""
        lines.append(f"| {row['step']}{mark} | {row['heldout_bits_per_seq']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from ntm.contract.tasks import Difficulty
    from ntm.training.evaluation import parse_points
    from ntm.training.runs import Run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--points", required=True, help="e.g. 10x10,20x10,10x20")
    parser.add_argument("--select", default=None, help="choose the checkpoint at this point")
    parser.add_argument("-n", "--sequences", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234, help="data seed of the table")
    parser.add_argument("--select-seed", type=int, default=777)
    parser.add_argument("--max-heldout", type=float, default=0.1,
                        help="only checkpoints this good inside the training range are chosen")
    parser.add_argument("--require", default=None,
                        help="only checkpoints at most --require-max at these points are chosen")
    parser.add_argument("--require-max", type=float, default=0.1)
    parser.add_argument("--name", default=None, help="results name [default: the run's]")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--small", action="store_true", help="(results file suffix only)")
    args = parser.parse_args()
    task = Run.load(args.run_dir).task
    points = parse_points(args.points, task)
    select: Difficulty | None = parse_points(args.select, task)[0] if args.select else None
    require = parse_points(args.require, task) if args.require else []
    rows = sweep(args.run_dir, points, select, args.sequences, args.seed, args.select_seed,
                 require)
    result = {"benchmark": "checkpoints", "mode": "small" if args.small else "full",
              "command": "python benchmarks/checkpoint_sweep.py " + " ".join(sys.argv[1:]),
              "run": str(args.run_dir), "points": [p.label() for p in points],
              "select": select.label() if select else None, "sequences": args.sequences,
              "seed": args.seed, "select_seed": args.select_seed, "rows": rows}
    eligible = [r for r in rows if r["heldout_bits_per_seq"] <= args.max_heldout
                and all(bits <= args.require_max
                        for bits in r.get("required_mean_bits", {}).values())]
    result.update(max_heldout=args.max_heldout, require=[p.label() for p in require],
                  require_max=args.require_max)
    if select and eligible:
        result["chosen_step"] = min(eligible, key=lambda r: (r["select_mean_bits"],
                                                             -r["step"]))["step"]
    name = f"checkpoints-{args.name or args.run_dir.name}"
    write_results(args.out, name, args.small, result, markdown(result))


if __name__ == "__main__":
    main()
