"""Typed configuration fields: the metadata a frozen dataclass's fields carry, and the checks
that read it. NumPy-free and TensorFlow-free: the model's and training's configs
(``ntm.model.config``, ``ntm.training.config``) and the server's settings use it, and the command
line generates its options from it (``ntm.cli.common``).

Every field says, in its metadata (``setting``), its help text, its allowed range or choices,
its command-line flag and whether a resumed run may change it. A dataclass checks its values
against that metadata (``check_fields``): default, range and help live in one place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from ntm.contract.errors import NtmError

T = TypeVar("T")


class ConfigError(ValueError, NtmError):
    """A configuration value or key is invalid; the message names it, ``config_field`` the
    field when there is one. A usage error: the values come from the user (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.config_field = field


class ConfigFileError(ConfigError):
    """A run's config.json is missing or corrupt (exit code 1: the file is wrong, not the
    command)."""

    exit_code = 1


def setting(default: Any, help: str, *, flags: tuple[str, ...] = (),
            choices: tuple[str, ...] | None = None, low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False,
            resumable: bool = False, cli: bool = True, envvar: str | None = None) -> Any:
    """A config field with its metadata: ``help``; the allowed values (``choices``, or the range
    ``low``..``high``, each end open or closed; None = unbounded); ``flags``, the command-line
    spellings [default: --field-name; a bool's "--on/--off"]; ``resumable``: a resumed run may
    change it; ``cli``: False for fields the command line does not set; ``envvar``: an
    environment variable the command line also reads it from."""
    return dataclasses.field(default=default, metadata={
        "help": help, "flags": flags, "choices": choices, "low": low, "high": high,
        "low_open": low_open, "high_open": high_open, "resumable": resumable, "cli": cli,
        "envvar": envvar})


def value_type(cls: type, field: dataclasses.Field) -> type:
    """The field's value type (int, float, str), None-ness aside."""
    hint = typing.get_type_hints(cls)[field.name]
    if isinstance(hint, types.UnionType):
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    return hint


def describe_range(low, high, low_open: bool, high_open: bool) -> str:
    """'>= 1', '> 0', 'in (0, 1]'..."""
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_fields(config: Any) -> None:
    """ConfigError naming the first field whose value breaks its metadata (type, range,
    choices); a None value passes for a field whose default is None."""
    for f in dataclasses.fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if not meta or (value is None and f.default is None):
            continue
        if meta["choices"] is not None:
            if value not in meta["choices"]:
                raise ConfigError(f"{f.name} must be one of {', '.join(meta['choices'])}, "
                                  f"got {value!r}", f.name)
            continue
        low, high = meta["low"], meta["high"]
        if low is None and high is None:
            continue
        kind = value_type(type(config), f)
        number = (int,) if kind is int else (int, float)
        ok = isinstance(value, number) and not isinstance(value, bool)
        if ok:
            ok = ((low is None or (value > low if meta["low_open"] else value >= low))
                  and (high is None or (value < high if meta["high_open"] else value <= high)))
        if not ok:
            what = "an integer " if kind is int else ""
            raise ConfigError(f"{f.name} must be {what}"
                              f"{describe_range(low, high, meta['low_open'], meta['high_open'])}, "
                              f"got {value!r}", f.name)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(names)}"
        )
    return cls(**data)


POSITIVE = dict(low=1)  # an integer >= 1
