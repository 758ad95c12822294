"""Helpers shared by the commands: quiet TensorFlow, options generated from the config
dataclasses, the parameter types the commands share, and ``NtmGroup``, which shows every
``NtmError`` as a one-line Click error (the one place errors are translated)."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Iterable, Callable

import click
from click.core import ParameterSource

from ntm.contract.fields import value_type
from ntm.contract.errors import NtmError
from ntm.contract.tasks import task_names


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where the
    platform has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def quiet_tensorflow(threads: int | None = None, inter_op: int | None = None):
    """Import TensorFlow with its start-up chatter silenced; optionally pin its thread pools.

    ``threads``: intra-op threads (one operation split over them) and, unless ``inter_op`` is
    given, inter-op threads too (independent operations run at once). One intra-op thread is the
    fastest for this small recurrent model's operations on CPU.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's kernels are slower for this small recurrent model (docs/performance.md) and
    # drift further from onnxruntime's results; off unless the user asks for it.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if "tensorflow" not in sys.modules:
        # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) ignore TF_CPP_MIN_LOG_LEVEL on
        # recent versions; silence file descriptor 2 for the import alone.
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op or threads)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process (tests): keep what it has
            pass
    return tf


class WordOrCount(click.ParamType):
    """A keyword (converted to None) or a positive integer: ``dynamic|N``, ``auto|N``.

    ``unit`` names what N counts, for the message when it is below 1.
    """

    def __init__(self, word: str, unit: str, why_positive: str):
        self.word = word
        self.name = f"{word}|N"
        self.unit = unit
        self.why_positive = why_positive

    def convert(self, value, param, ctx):
        if value is None or value == self.word:
            return None
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither '{self.word}' nor an integer", param, ctx)
        if n < 1:
            self.fail(f"{n} {self.unit}: {self.why_positive}", param, ctx)
        return n


checkpoint_option = click.option(
    "--checkpoint", type=click.IntRange(min=0), default=None, metavar="STEP",
    help="Use the run's checkpoint of this training step (one it keeps: see --keep-checkpoints"
         ", benchmarks/checkpoint_sweep.py) [default: the latest].")


class TaskChoice(click.Choice):
    """A task name, checked against the task registry when the command runs, so a task plugged
    in through the ``ntm.tasks`` entry-point group is a valid choice (and listed in --help)."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(task_names())

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns it; the registry decides
        pass


class ConfigOption(click.Option):
    """An option that sets a config dataclass field (``config_field``); its flag may differ
    (``--read-heads`` sets ``num_read_heads``)."""

    def __init__(self, *args, config_field: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.config_field = config_field


def _click_type(cls: type, field: dataclasses.Field) -> click.ParamType | type:
    """click.Choice, IntRange or FloatRange from the field's metadata; else its value type."""
    meta, kind = field.metadata, value_type(cls, field)
    if meta["choices"] is not None:
        return click.Choice(meta["choices"])
    if meta["low"] is None and meta["high"] is None:
        return kind
    bounds = dict(min=meta["low"], max=meta["high"], min_open=meta["low_open"],
                  max_open=meta["high_open"])
    return click.IntRange(**bounds) if kind is int else click.FloatRange(**bounds)


def config_options(*classes: type, only: Iterable[str] | None = None) -> Callable:
    """One ``ConfigOption`` per command-line field of the config dataclasses ``classes`` (those
    named in ``only``, when given), in field order: flag, default, range or choices, help and
    environment variable all come from the field (``ntm.contract.fields.setting``)."""
    wanted = None if only is None else set(only)
    options = []
    for cls in classes:
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if not meta.get("cli") or (wanted is not None and field.name not in wanted):
                continue
            flags = meta["flags"] or ("--" + field.name.replace("_", "-"),)
            extra = {"envvar": meta["envvar"]} if meta.get("envvar") else {}
            if value_type(cls, field) is not bool:
                extra["type"] = _click_type(cls, field)
            options.append(click.option(
                *flags, cls=ConfigOption, config_field=field.name, default=field.default,
                show_default=field.default is not None and not meta.get("envvar"),
                help=meta["help"], **extra))

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def config_values(ctx: click.Context, cls: type, given_only: bool = False) -> dict:
    """{field: value} of the options that set ``cls``'s fields; ``given_only``: just those given
    on the command line or through the environment."""
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {p.config_field: ctx.params[p.name] for p in ctx.command.params
            if isinstance(p, ConfigOption) and p.config_field in cls.__dataclass_fields__
            and (not given_only or ctx.get_parameter_source(p.name) in given)}


def click_error(err: NtmError, ctx: click.Context | None) -> click.ClickException:
    """The Click exception that shows ``err``: ``ctx`` is the failing command's context."""
    message = str(err)
    if err.exit_code != 2:
        error = click.ClickException(message)
        error.exit_code = err.exit_code
        return error
    params = ctx.command.params if ctx is not None else []
    param = next((p for p in params
                  if getattr(p, "config_field", p.name) == err.config_field), None)
    if param is not None:
        return click.BadParameter(message, ctx, param=param)
    return click.UsageError(message, ctx)


# A module an optional extra installs -> that extra.
EXTRAS = {"tensorflow": "train", "tf2onnx": "train", "onnx": "train", "tensorboard": "train",
          "keras": "train", "matplotlib": "plot", "grpc": "grpc", "tritonclient": "grpc"}


def missing_extra(err: ModuleNotFoundError, command: str | None) -> click.ClickException | None:
    """One line naming the extra that installs the missing module, or None when no extra
    does (a broken install, shown as it is)."""
    module = (err.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return click.ClickException(f"`ntm {command or ''}` needs {module}, which the {extra} "
                                f"extra installs: pip install -e '.[{extra}]'")


class NtmGroup(click.Group):
    """A command group that shows an escaping ``NtmError`` as a one-line Click error, and a
    missing optional dependency as one line naming its extra."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NtmError as err:
            raise click_error(err, self._failed_context(ctx)) from None
        except ModuleNotFoundError as err:
            friendly = missing_extra(err, ctx.invoked_subcommand)
            if friendly is None:
                raise
            raise friendly from None

    def _failed_context(self, ctx: click.Context) -> click.Context:
        """A context for the subcommand that ran (for its usage line and options); a nested
        group's own handler has already answered for its subcommands."""
        name = ctx.invoked_subcommand
        command = self.get_command(ctx, name) if name else None
        if command is None:
            return ctx
        return click.Context(command, info_name=name, parent=ctx)
