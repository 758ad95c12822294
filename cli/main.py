"""The ``ntm`` command group: one module per command, registered here.

Every error the project raises on purpose is an ``NtmError`` (``ntm.contract.errors``); the
group (``ntm.cli.common.NtmGroup``) turns it into Click's one-line error, once, for every
command: exit code 1, or 2 with the command's usage line for a usage error (naming the option
when the error names the config field it sets).
"""

from __future__ import annotations

import click

from ntm import __version__
from ntm.cli.common import NtmGroup


@click.group(cls=NtmGroup, context_settings={"help_option_names": ["-h", "--help"],
                                             "auto_envvar_prefix": "NTM"})
@click.version_option(__version__, "-V", "--version", prog_name="ntm")
def cli() -> None:
    """A Neural Turing Machine that learns: train, evaluate, export to ONNX, serve on CPU."""


def _register() -> None:
    from ntm.cli.evaluate import evaluate
    from ntm.cli.export import export
    from ntm.cli.kernel import build_kernel
    from ntm.cli.models import models
    from ntm.cli.plot import plot
    from ntm.cli.predict import predict
    from ntm.cli.serve import serve
    from ntm.cli.train import train

    cli.add_command(train)
    cli.add_command(evaluate)
    cli.add_command(export)
    cli.add_command(predict)
    cli.add_command(serve)
    cli.add_command(models)
    cli.add_command(plot)
    cli.add_command(build_kernel)


_register()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line on stderr ("warning: ..."), not Python's file:line form."""
    click.echo(f"warning: {message}", err=True)


def main() -> None:
    import warnings

    warnings.showwarning = _show_warning
    cli()


if __name__ == "__main__":
    main()
