"""``ntm evaluate``: a generalisation table for a training run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ntm.cli.common import WordOrCount, quiet_tensorflow


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
def evaluate(run_dir: Path | None, points: str | None, sequences: int, batch_size: int,
             seed: int, json_out: Path | None, threads: int, memory_size: int | None) -> None:
    """Measure generalisation of the run in RUN_DIR [default: the latest run under runs/].

    Prints bits per sequence (mean and worst over fresh sequences) at each point, and the
    memory rows it ran with.
    """
    from ntm.evaluation import format_table
    from ntm.runs import RunError, latest_run

    try:
        run_dir = run_dir or latest_run()
    except RunError as err:
        raise click.ClickException(str(err)) from None
    quiet_tensorflow(threads)
    task, state, rows = evaluate_run(run_dir, points, sequences, batch_size, seed, memory_size)
    click.echo(f"{task.name} run {run_dir} at step {int(state.step.numpy())} "
               f"(trained on {task.length_name} {task.train_lengths[0]}-{task.train_lengths[1]}"
               + (f", repeats {task.train_repeats[0]}-{task.train_repeats[1]}"
                  if task.train_repeats else "") + ")")
    click.echo(format_table(rows, task.length_name))
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({
            "task": task.name, "run_dir": str(run_dir), "step": int(state.step.numpy()),
            "sequences_seen": int(state.sequences.numpy()), "seed": seed,
            "train_lengths": list(task.train_lengths),
            "train_repeats": list(task.train_repeats) if task.train_repeats else None,
            "rows": [r.as_dict() for r in rows]}, indent=2))
        click.echo(f"wrote {json_out}")


def eval_points(points: str | None, task) -> list:
    """--points -> difficulties (the task's defaults when None); BadParameter when bad."""
    from ntm.evaluation import parse_points

    try:
        return parse_points(points, task) if points else task.default_eval_points()
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--points") from None


def rows_for_points(task, trained: int, memory_size: int | None = None):
    """Difficulty -> memory rows: ``memory_size``, else the smallest of trained x 1, 2, 4, ...
    that holds it (``ntm.contract.memory_plan``, without the server's upper limit)."""
    from ntm.contract.memory_plan import choose_memory_size

    if memory_size is not None:
        return lambda difficulty: memory_size
    return lambda difficulty: choose_memory_size(task.memory_rows(difficulty), trained,
                                                 maximum=2 ** 30)


def evaluate_run(run_dir: Path, points: str | None, sequences: int, batch_size: int = 50,
                 seed: int = 1234, memory_size: int | None = None) -> tuple:
    """Load a run's latest checkpoint and measure it at ``points`` with TensorFlow (import it
    through ``quiet_tensorflow`` first) -> (task, training state, EvalRows); a one-line
    ClickException for a missing or corrupt run. Memory rows as ``rows_for_points``."""
    from ntm.checkpoints import load_model
    from ntm.config import ConfigError
    from ntm.evaluation import evaluate
    from ntm.runs import RunError
    from ntm.steps import make_predict_with_rows
    from ntm.contract.tasks import get_task
    from ntm.trainer import task_for

    try:
        model, model_config, train_config, state = load_model(run_dir)
        task = task_for(train_config, get_task)
    except (RunError, ConfigError) as err:
        raise click.ClickException(str(err)) from None
    difficulties = eval_points(points, task)
    rows = evaluate(make_predict_with_rows(model), task, difficulties, sequences, batch_size,
                    seed, rows_for=rows_for_points(task, model_config.memory_size, memory_size))
    return task, state, rows
