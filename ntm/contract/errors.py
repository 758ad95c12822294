"""``NtmError``: the base of every error this project raises on purpose.

Its message names what is wrong and is meant for the user as it is: the command line shows it
once (exit code 1, or 2 for a usage error) and the server answers it as a 4xx
``{"error": ...}``. Anything else that escapes is a bug.

The project's error classes keep their older bases too (``ConfigError`` is still a
``ValueError``, ``ExportError`` a ``RuntimeError``...), so code that catches those still does.
"""


class NtmError(Exception):
    """An error whose message is for the user (what is wrong, and what to do).

    ``exit_code`` is the command line's exit code for it: 1, or 2 for a usage error (the
    command was given something impossible; ``ntm.cli.main`` then shows the command's usage
    line). ``config_field``, when set, names the configuration field at fault; the command line names
    the option that sets it.
    """

    exit_code = 1  # the command line's exit code for it
    config_field: str | None = None
