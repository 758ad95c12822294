"""``NtmError``: the base of every error this project raises on purpose.

Its message names what is wrong and is meant for the user as it is: the command line shows it
once (exit code 1, or 2 for a usage error) and the server answers it as a 4xx
``{"error": ...}``. Anything else that escapes is a bug.
"""


class NtmError(Exception):
    """An error whose message is for the user (what is wrong, and what to do)."""

    exit_code = 1  # the command line's exit code for it
