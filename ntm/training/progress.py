"""A one-line training progress display: step, loss, bits/seq, speed and ETA.

On a terminal the line redraws in place; otherwise (a log file, a pipe) a full line is printed
every ``every`` steps, so background runs leave a readable log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int, start: int, every: int, stream: TextIO | None = None):
        self.total = total
        self.start_step = start
        self.every = every
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()

    def update(self, step: int, fields: dict[str, str]) -> None:
        if not self.tty and step % self.every:
            return
        done = step - self.start_step
        rate = done / max(time.monotonic() - self.t0, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        text = " | ".join([f"step {step}/{self.total}"] + [f"{k} {v}" for k, v in fields.items()]
                          + [f"{rate:.1f} it/s", f"ETA {format_seconds(eta)}"])
        if self.tty:
            self.stream.write("\r" + text[:160].ljust(100))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (an evaluation, a warning) without breaking the progress line."""
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
