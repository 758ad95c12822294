"""``ntm train``: train the NTM (or the paper's LSTM baseline, ``--model lstm``) on a task,
with checkpoints, resume and TensorBoard logs.

The options that set the model and the training come from the config dataclasses
(``ntm.model.config``, ``ntm.training.config``: flag, default, range and help in one place);
the rest are about this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from ntm.cli.common import (TaskChoice, WordOrCount, available_cpus, config_values,
                            config_options, quiet_tensorflow)
from ntm.model.config import ModelConfig
from ntm.training.config import TrainConfig, train_config_for
from ntm.training.runs import default_run_dir, has_checkpoint

POSITIVE = click.IntRange(min=1)


@click.command(short_help="Train the NTM (or the LSTM baseline) on a task.")
@click.option("--task", type=TaskChoice(), default=TrainConfig.task, show_default=True,
              help="Which task to learn (the built-in ones, and any installed plug-in's).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory [default: runs/TASK].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@config_options(TrainConfig, ModelConfig)
@click.option("--cpu-devices", type=POSITIVE, default=None,
              help="Logical CPU devices (mirrored: one replica each) "
                   "[default: 2 with --strategy mirrored, else 1].")
@click.option("--threads", type=WordOrCount("auto", "threads", "at least one must run"),
              default="auto", show_default=True,
              help="TensorFlow inter-op threads: independent operations of the training step "
                   "(the backward pass has many) run this many at once, each on one thread "
                   "[auto: the CPUs this process may use; faster per step than 1, "
                   "benchmarks/train_threads.py]. Use 1 when trainings share the machine.")
@click.pass_context
def train(ctx: click.Context, task: str, out: Path | None, resume: bool, threads: int | None,
          cpu_devices: int | None, **_) -> None:
    """Train the NTM on TASK with checkpoints, resume and TensorBoard logs.

    --model lstm trains the paper's LSTM baseline instead (--lstm-layers, --lstm-units; the
    NTM's memory, heads and polish settings are not its own). The run goes to runs/TASK unless
    --out says otherwise. Ctrl-C (or SIGTERM) saves a checkpoint and stops; --resume continues
    exactly where it stopped.

    --strategy multi-worker: start `ntm train` once per worker with the same options and
    --out, each with its own TF_CONFIG, e.g.
    {"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]},
    "task": {"type": "worker", "index": 0}}; the chief (worker 0) writes the run.
    """
    # First: TensorFlow must be imported by quiet_tensorflow (oneDNN off, start-up chatter
    # muted) before anything else imports it.
    # One intra-op thread: the operations are too small to split (one thread each was measured
    # fastest); the parallelism that pays is between them.
    quiet_tensorflow(1, inter_op=threads or available_cpus())
    from ntm.training.trainer import Trainer

    out = out or default_run_dir(task)
    run = resumed_run(ctx, out, task) if resume else new_run(ctx, out, task)
    task = run.train_config.task  # a resume may leave --task out (its default is not the run's)
    strategy = make_strategy(run.train_config, cpu_devices, ctx)
    trainer = Trainer(run, resume=resume, strategy=strategy)
    click.echo(f"{'resuming' if resume else 'training'} {task} in {out} at step "
               f"{int(trainer.state.step.numpy())} ({describe_model(run.model_config)}; "
               f"batch {run.train_config.batch_size}, "
               f"{run.train_config.optimizer} lr {run.train_config.learning_rate}, "
               f"{run.train_config.strategy} strategy, {strategy.num_replicas_in_sync} "
               f"replica(s))", err=True)
    result = trainer.run()
    written = (f"checkpoint in {out}/checkpoints" if trainer.out_dir == trainer.run_dir
               else "the chief worker wrote the run")
    click.echo(f"{result.reason}: step {result.step}, {result.sequences} sequences, "
               f"{result.elapsed:.0f} s, held-out {result.eval_bits:.3f} bits/seq; {written}",
               err=True)
    if result.reason == "interrupted":
        click.echo(f"resume with: ntm train --task {task} --out {out} --resume", err=True)
        sys.exit(130)


def new_run(ctx: click.Context, out: Path, task: str):
    """The run the options describe, refusing to train over an existing one."""
    from ntm.training.runs import Run

    if has_checkpoint(out):
        raise click.UsageError(f"{out} already holds a training run; continue it with "
                               f"--resume, or choose another --out", ctx)
    model_options = config_values(ctx, ModelConfig)
    train_config = train_config_for(model_options["architecture"], task=task,
                                    **config_values(ctx, TrainConfig))
    return Run.create(out, train_config, **model_options)


def describe_model(config: ModelConfig) -> str:
    """"NTM, memory 128x20, lstm controller 100" (", memory 128x20 learned at start" with a
    learned initial memory) or "LSTM baseline 3 x 256"."""
    if config.has_memory:
        learned = " learned at start" if config.initial_memory == "learned" else ""
        return (f"NTM, memory {config.memory_size}x{config.memory_width}{learned}, "
                f"{config.controller} controller {config.controller_size}")
    return f"LSTM baseline {config.lstm_layers} x {config.lstm_units}"


def resumed_run(ctx: click.Context, out: Path, task: str):
    """The run in ``out`` with the schedule options given on the command line applied."""
    from ntm.training.runs import Run

    if not has_checkpoint(out):
        raise click.UsageError(f"--resume: {out} has no checkpoint to resume", ctx)
    run = Run.load(out)
    if run.train_config.task != task and \
            ctx.get_parameter_source("task") == ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--task {task} differs from the run's task "
                               f"{run.train_config.task!r}", ctx)
    return run.resumed({**config_values(ctx, TrainConfig, given_only=True),
                        **config_values(ctx, ModelConfig, given_only=True)})


def make_strategy(train_config: TrainConfig, cpu_devices: int | None, ctx: click.Context):
    """Split the CPU into logical devices, then build the run's tf.distribute strategy (before
    any other TensorFlow op: both must precede TensorFlow's device initialisation)."""
    from ntm.training.distribute import configure_logical_cpus, make_strategy, replica_batch_size

    name = train_config.strategy
    if cpu_devices is None:
        cpu_devices = 2 if name == "mirrored" else 1
    elif cpu_devices > 1 and name != "mirrored":
        raise click.UsageError(f"--cpu-devices {cpu_devices} needs --strategy mirrored "
                               f"(multi-worker runs one replica per worker process)", ctx)
    try:
        configure_logical_cpus(cpu_devices)
    except RuntimeError as err:  # TensorFlow's own error: it has already started here
        raise click.ClickException(f"--cpu-devices {cpu_devices}: {err}") from None
    strategy = make_strategy(name, tf_config=os.environ.get("TF_CONFIG"))
    replica_batch_size(train_config.batch_size, strategy.num_replicas_in_sync)
    return strategy
