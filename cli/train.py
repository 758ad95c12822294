"""``ntm train``: train the NTM on a task, with checkpoints, resume and TensorBoard logs."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ntm.cli.common import quiet_tensorflow
from ntm.config import STRATEGIES, ConfigError, ModelConfig, TrainConfig, load_configs
from ntm.runs import default_run_dir, has_checkpoint
from ntm.contract.tasks import task_names

_T = TrainConfig()
_M = ModelConfig()

# CLI option name -> (config class, field). Defaults come from the dataclasses: one source.
TRAIN_OPTIONS = {
    "steps": "steps", "batch_size": "batch_size", "optimizer": "optimizer",
    "learning_rate": "learning_rate", "momentum": "momentum",
    "lr_decay": "lr_decay", "lr_decay_every": "lr_decay_every",
    "grad_clip_norm": "grad_clip_norm", "grad_clip_value": "grad_clip_value",
    "min_length": "min_length", "max_length": "max_length",
    "min_repeats": "min_repeats", "max_repeats": "max_repeats",
    "curriculum_stages": "curriculum_stages", "curriculum_threshold": "curriculum_threshold",
    "seed": "seed", "eval_every": "eval_every", "eval_size": "eval_size",
    "checkpoint_every": "checkpoint_every", "keep_checkpoints": "keep_checkpoints",
    "log_every": "log_every",
    "target_error": "target_error", "patience": "patience_evals", "strategy": "strategy",
}
MODEL_OPTIONS = {
    "memory_size": "memory_size", "memory_width": "memory_width", "controller": "controller",
    "controller_size": "controller_size", "read_heads": "num_read_heads",
    "write_heads": "num_write_heads", "shift_range": "shift_range", "clip_value": "clip_value",
    "memory_init": "memory_init",
}
# What a resumed run may change: schedule, reporting and placement, never the model or the data
# (a checkpoint restores under any strategy; the global batch is the same).
RESUMABLE = {"steps", "eval_every", "checkpoint_every", "log_every", "target_error",
             "patience_evals", "keep_checkpoints", "strategy"}

POSITIVE = click.IntRange(min=1)


@click.command(short_help="Train the NTM on a task.")
@click.option("--task", type=click.Choice(task_names()), default="copy", show_default=True,
              help="Which paper task to learn.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory [default: runs/TASK].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--steps", type=POSITIVE, default=_T.steps, show_default=True,
              help="Total training steps (a resumed run may raise it).")
@click.option("--batch-size", type=POSITIVE, default=_T.batch_size, show_default=True,
              help="Sequences per step (the global batch: split over the replicas).")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop"]), default=_T.optimizer,
              show_default=True, help="Optimiser.")
@click.option("--learning-rate", "--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=_T.learning_rate, show_default=True, help="Learning rate.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=_T.momentum,
              show_default=True, help="RMSProp momentum.")
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=_T.lr_decay,
              show_default=True, help="Multiply the learning rate by this every "
                                      "--lr-decay-every steps (1 = constant).")
@click.option("--lr-decay-every", type=POSITIVE, default=_T.lr_decay_every, show_default=True,
              help="Steps between learning-rate decays.")
@click.option("--grad-clip-norm", type=click.FloatRange(min=0, min_open=True),
              default=_T.grad_clip_norm, show_default=True, help="Global gradient-norm clip.")
@click.option("--grad-clip-value", type=click.FloatRange(min=0, min_open=True),
              default=_T.grad_clip_value, show_default=True, help="Per-component gradient clip.")
@click.option("--min-length", type=POSITIVE, default=None,
              help="Shortest training sequence (recall: fewest items) [default: the task's].")
@click.option("--max-length", type=POSITIVE, default=None,
              help="Longest training sequence (recall: most items) [default: the task's].")
@click.option("--min-repeats", type=POSITIVE, default=None, help="repeat-copy: fewest repeats.")
@click.option("--max-repeats", type=POSITIVE, default=None, help="repeat-copy: most repeats.")
@click.option("--curriculum-stages", type=POSITIVE, default=_T.curriculum_stages,
              show_default=True, help="Lengthen sequences in this many stages (1 = off).")
@click.option("--curriculum-threshold", type=click.FloatRange(min=0),
              default=_T.curriculum_threshold, show_default=True,
              help="Advance a stage below this bits/seq at its longest sequences.")
@click.option("--seed", type=int, default=_T.seed, show_default=True,
              help="Seed for weights and data.")
@click.option("--eval-every", type=POSITIVE, default=_T.eval_every, show_default=True,
              help="Steps between held-out evaluations.")
@click.option("--eval-size", type=POSITIVE, default=_T.eval_size, show_default=True,
              help="Sequences in the fixed held-out set.")
@click.option("--checkpoint-every", type=POSITIVE, default=_T.checkpoint_every,
              show_default=True, help="Steps between checkpoints.")
@click.option("--keep-checkpoints", type=POSITIVE, default=_T.keep_checkpoints,
              show_default=True, help="Recent checkpoints kept on disk.")
@click.option("--log-every", type=POSITIVE, default=_T.log_every, show_default=True,
              help="Steps between metric lines.")
@click.option("--target-error", type=float, default=_T.target_error, show_default=True,
              help="Stop when held-out bits/seq is at most this (negative: never).")
@click.option("--patience", type=POSITIVE, default=_T.patience_evals, show_default=True,
              help="Consecutive evaluations at the target before stopping.")
@click.option("--memory-size", type=POSITIVE, default=_M.memory_size, show_default=True,
              help="Memory rows (N).")
@click.option("--memory-width", type=POSITIVE, default=_M.memory_width, show_default=True,
              help="Memory row width (M).")
@click.option("--controller", type=click.Choice(["lstm", "feedforward"]), default=_M.controller,
              show_default=True, help="Controller network.")
@click.option("--controller-size", type=POSITIVE, default=_M.controller_size, show_default=True,
              help="Controller units.")
@click.option("--read-heads", type=POSITIVE, default=_M.num_read_heads, show_default=True,
              help="Read heads.")
@click.option("--write-heads", type=POSITIVE, default=_M.num_write_heads, show_default=True,
              help="Write heads.")
@click.option("--shift-range", type=click.IntRange(min=0), default=_M.shift_range,
              show_default=True, help="Allowed shifts -R..R.")
@click.option("--clip-value", type=click.FloatRange(min=0, min_open=True),
              default=_M.clip_value, show_default=True, help="Controller output clip.")
@click.option("--memory-init", type=click.FloatRange(min=0), default=_M.memory_init,
              show_default=True, help="Constant initial memory value.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=_T.strategy,
              show_default=True,
              help="tf.distribute strategy: one device; mirrored over --cpu-devices logical "
                   "CPUs; or multi-worker, one process per worker, each with its TF_CONFIG. "
                   "--batch-size stays the global batch, split evenly over the replicas.")
@click.option("--cpu-devices", type=POSITIVE, default=None,
              help="Logical CPU devices (mirrored: one replica each) "
                   "[default: 2 with --strategy mirrored, else 1].")
@click.option("--threads", type=POSITIVE, default=1, show_default=True,
              help="TensorFlow threads (1 is fastest for this model on CPU).")
@click.pass_context
def train(ctx: click.Context, task: str, out: Path | None, resume: bool, threads: int,
          cpu_devices: int | None, **options) -> None:
    """Train the NTM on TASK with checkpoints, resume and TensorBoard logs.

    The run goes to runs/TASK unless --out says otherwise. Ctrl-C (or SIGTERM) saves a
    checkpoint and stops; --resume continues exactly where it stopped.

    --strategy multi-worker: start `ntm train` once per worker with the same options and
    --out, each with its own TF_CONFIG, e.g.
    {"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
    "task": {"type": "worker", "index": 0}}; the chief (worker 0) writes the run.
    """
    # First: TensorFlow must be imported by quiet_tensorflow (oneDNN off, start-up chatter
    # muted) before anything else imports it (the config checks below import ntm.trainer).
    quiet_tensorflow(threads)
    out = out or default_run_dir(task)
    given = {name for name in options
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                                   ParameterSource.ENVIRONMENT)}
    train_kwargs = {field: options[opt] for opt, field in TRAIN_OPTIONS.items()}
    model_kwargs = {field: options[opt] for opt, field in MODEL_OPTIONS.items()}
    if resume:
        model_config, train_config = _resumed_configs(out, task, given, train_kwargs,
                                                      model_kwargs, ctx)
    else:
        if has_checkpoint(out):
            raise click.UsageError(
                f"{out} already holds a training run; continue it with --resume, or choose "
                f"another --out", ctx)
        model_config, train_config = _new_configs(task, train_kwargs, model_kwargs, ctx)

    strategy = _strategy(train_config, cpu_devices, ctx)
    from ntm.contract.tasks import get_task
    from ntm.trainer import Trainer, TrainingError, task_for

    task_obj = task_for(train_config, get_task)
    try:
        trainer = Trainer(out, model_config, train_config, task_obj, resume=resume,
                          strategy=strategy)
    except (ConfigError, ValueError, AssertionError) as err:
        raise click.ClickException(f"cannot start training in {out}: {err}") from None
    step0 = int(trainer.state.step.numpy())
    click.echo(f"{'resuming' if resume else 'training'} {task} in {out} at step {step0} "
               f"(batch {train_config.batch_size}, {train_config.optimizer} "
               f"lr {train_config.learning_rate}, {train_config.strategy} strategy, "
               f"{strategy.num_replicas_in_sync} replica(s))", err=True)
    try:
        result = trainer.run()
    except TrainingError as err:
        raise click.ClickException(str(err)) from None
    written = (f"checkpoint in {out}/checkpoints" if trainer.out_dir == trainer.run_dir
               else "the chief worker wrote the run")
    click.echo(f"{result.reason}: step {result.step}, {result.sequences} sequences, "
               f"{result.elapsed:.0f} s, held-out {result.eval_bits:.3f} bits/seq; {written}",
               err=True)
    if result.reason == "interrupted":
        click.echo(f"resume with: ntm train --task {task} --out {out} --resume", err=True)
        sys.exit(130)


def _strategy(train_config: TrainConfig, cpu_devices: int | None, ctx):
    """Split the CPU into logical devices, then build the run's tf.distribute strategy (before
    any other TensorFlow op: both must precede TensorFlow's device initialisation)."""
    from ntm.distribute import configure_logical_cpus, make_strategy, replica_batch_size

    name = train_config.strategy
    if cpu_devices is None:
        cpu_devices = 2 if name == "mirrored" else 1
    elif cpu_devices > 1 and name != "mirrored":
        raise click.UsageError(f"--cpu-devices {cpu_devices} needs --strategy mirrored "
                               f"(multi-worker runs one replica per worker process)", ctx)
    try:
        configure_logical_cpus(cpu_devices)
    except RuntimeError as err:  # TensorFlow already started in this process
        raise click.ClickException(f"--cpu-devices {cpu_devices}: {err}") from None
    try:
        strategy = make_strategy(name, tf_config=os.environ.get("TF_CONFIG"))
    except ConfigError as err:
        raise click.BadParameter(str(err), ctx, param_hint="--strategy") from None
    try:
        replica_batch_size(train_config.batch_size, strategy.num_replicas_in_sync)
    except ConfigError as err:
        raise click.BadParameter(str(err), ctx, param_hint="--batch-size") from None
    return strategy


def _new_configs(task: str, train_kwargs: dict, model_kwargs: dict, ctx) -> tuple:
    from ntm.contract.tasks import get_task
    from ntm.trainer import task_for

    try:
        train_config = TrainConfig(task=task, **train_kwargs)
        task_obj = task_for(train_config, get_task)
        model_config = ModelConfig(input_size=task_obj.input_size,
                                   output_size=task_obj.output_size, **model_kwargs)
    except ConfigError as err:
        raise click.UsageError(str(err), ctx) from None
    needed = task_obj.memory_rows(task_obj.hardest_training_difficulty)
    if model_config.memory_size < needed:
        raise click.UsageError(
            f"--memory-size {model_config.memory_size} is too small for {task} at "
            f"{task_obj.training_range()}: its longest training sequence needs {needed} memory "
            f"rows", ctx)
    return model_config, train_config


def _resumed_configs(out: Path, task: str, given: set, train_kwargs: dict, model_kwargs: dict,
                     ctx) -> tuple:
    if not has_checkpoint(out):
        raise click.UsageError(f"--resume: {out} has no checkpoint to resume", ctx)
    try:
        model_config, train_config = load_configs(out)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    if train_config.task != task and \
            ctx.get_parameter_source("task") == ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--task {task} differs from the run's task "
                               f"{train_config.task!r}", ctx)
    changes = {}
    for opt in given:
        if opt in TRAIN_OPTIONS:
            field, saved = TRAIN_OPTIONS[opt], train_config
            value = train_kwargs[field]
        else:
            field, saved = MODEL_OPTIONS[opt], model_config
            value = model_kwargs[field]
        if getattr(saved, field) == value:
            continue
        if field not in RESUMABLE:
            raise click.UsageError(
                f"--{opt.replace('_', '-')} {value} differs from the run's saved "
                f"{field}={getattr(saved, field)!r}; a resumed run keeps its model and data "
                f"settings (changeable: {', '.join(sorted(RESUMABLE))})", ctx)
        changes[field] = value
    return model_config, dataclasses.replace(train_config, **changes)
