"""``ntm evaluate``: a generalisation table for a training run."""

from __future__ import annotations

from pathlib import Path

import click

from ntm.cli.common import WordOrCount, checkpoint_option, quiet_tensorflow


@click.command(short_help="Bits/seq at lengths inside and beyond training.")
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option("--points", default=None,
              help="Comma-separated lengths (recall: item counts; repeat-copy: LENGTHxREPEATS) "
                   "[default: the task's table].")
@click.option("--sequences", "-n", type=click.IntRange(min=1), default=100, show_default=True,
              help="Fresh sequences per point.")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Sequences per forward pass.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Data seed.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the table as JSON here.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="TensorFlow threads.")
@click.option("--memory-size", type=WordOrCount("auto", "rows", "the memory needs at least one"),
              default="auto", show_default=True,
              help="Memory rows: 'auto' gives each point the smallest of the trained rows x 1, "
                   "2, 4, ... that holds it (what ntm serve does); N runs every point with N.")
@checkpoint_option
def evaluate(run_dir: Path | None, points: str | None, sequences: int, batch_size: int,
             seed: int, json_out: Path | None, threads: int, memory_size: int | None,
             checkpoint: int | None) -> None:
    """Measure generalisation of the run in RUN_DIR [default: the latest run under runs/].

    Prints bits per sequence (mean and worst over fresh sequences) at each point, and the
    memory rows it ran with.
    """
    from ntm.training.evaluation import format_table
    from ntm.files import write_json_atomic
    from ntm.training.runs import latest_run

    run_dir = run_dir or latest_run()
    quiet_tensorflow(threads)
    task, state, rows = evaluate_run(run_dir, points, sequences, batch_size, seed, memory_size,
                                     checkpoint)
    click.echo(f"{task.name} run {run_dir} at step {int(state.step.numpy())} "
               f"(trained on {task.length_name} {task.train_lengths[0]}-{task.train_lengths[1]}"
               + (f", repeats {task.train_repeats[0]}-{task.train_repeats[1]}"
                  if task.train_repeats else "") + ")")
    click.echo(format_table(rows, task.length_name))
    if json_out:
        write_json_atomic(json_out, {
            "task": task.name, "run_dir": str(run_dir), "step": int(state.step.numpy()),
            "sequences_seen": int(state.sequences.numpy()), "seed": seed,
            "train_lengths": list(task.train_lengths),
            "train_repeats": list(task.train_repeats) if task.train_repeats else None,
            "rows": [r.as_dict() for r in rows]})
        click.echo(f"wrote {json_out}")


def eval_points(points: str | None, task) -> list:
    """--points -> difficulties (the task's defaults when None); BadParameter when bad."""
    from ntm.training.evaluation import parse_points

    try:
        return parse_points(points, task) if points else task.default_eval_points()
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--points") from None


def evaluate_run(run_dir: Path, points: str | None, sequences: int, batch_size: int = 50,
                 seed: int = 1234, memory_size: int | None = None,
                 checkpoint: int | None = None) -> tuple:
    """Load a run's latest checkpoint (or the one of step ``checkpoint``) and measure it at
    ``points`` with TensorFlow (import it through ``quiet_tensorflow`` first) -> (task,
    training state, EvalRows); RunError or ConfigFileError for a missing or corrupt run, or a
    step it does not keep. Memory rows as ``ntm.training.evaluation.rows_for_points``."""
    from ntm.training.runs import Run

    run = Run.load(run_dir, checkpoint)
    rows = run.evaluate(eval_points(points, run.task), sequences, batch_size, seed, memory_size)
    return run.task, run.state, rows
