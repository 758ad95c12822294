"""Sequences kept across requests: the state a stateful model reached, per sequence id.

A request with ``sequence_start`` begins a sequence (or begins it again); later requests with
the same ``sequence_id`` go on from its state; ``sequence_end`` frees it. State lives in this
process's memory only: a restart forgets every sequence, and a request that goes on from one
is refused (``UnknownSequence``), never answered from a fresh memory.

Limits: at most ``max_sequences`` live at once (a new one past that: ``TooManySequences``,
429), and a sequence idle for ``idle_seconds`` is dropped (the next request for it hears that
it expired). Requests of one sequence run one at a time, in the order they arrive (``lock``).
Framework-free, so the command line and tests can use it without a server.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Callable, Hashable

import numpy as np

from ntm.serving.settings import ServerSettings
from ntm.serving.errors import BadRequest, ServingError

EXPIRED_REMEMBERED = 10_000  # ids of dropped sequences remembered, to say "expired"


class TooManySequences(ServingError):
    status = HTTPStatus.TOO_MANY_REQUESTS


class UnknownSequence(BadRequest):
    """A request goes on from a sequence this server does not hold (never started, ended,
    expired, or lost in a restart)."""


@dataclass
class Sequence:
    """One live sequence of one model.

    state: float32 [batch, S], what the model returned last (None before its first run)
    rows:  memory rows N, fixed when the sequence started (None: a model without memory)
    steps: time steps run so far
    context: what the task keeps between requests (recall: the items stored so far)
    """

    model: str
    id: Hashable
    rows: int | None
    batch: int
    last_used: float
    state: np.ndarray | None = None
    steps: int = 0
    context: dict = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def nbytes(self) -> int:
        return 0 if self.state is None else int(self.state.nbytes)


class SequenceStore:
    """Live sequences by (model, sequence id), with the cap and the idle timeout."""

    def __init__(self, max_sequences: int = ServerSettings.max_sequences,
                 idle_seconds: float = ServerSettings.sequence_idle_s,
                 clock: Callable[[], float] = time.monotonic):
        self.max_sequences = max_sequences
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._live: dict[tuple[str, Hashable], Sequence] = {}
        self._gone: OrderedDict[tuple[str, Hashable], str] = OrderedDict()  # key -> why
        self.expired_total = 0

    def __len__(self) -> int:
        self.purge()
        return len(self._live)

    @property
    def state_bytes(self) -> int:
        return sum(s.nbytes for s in self._live.values())

    def purge(self) -> int:
        """Drop sequences idle for longer than the timeout (not one that is running);
        returns how many."""
        now = self.clock()
        idle = [k for k, s in self._live.items()
                if now - s.last_used > self.idle_seconds and not s.lock.locked()]
        for key in idle:
            self._forget(key, f"expired after {self.idle_seconds:g} s idle")
        self.expired_total += len(idle)
        return len(idle)

    def start(self, model: str, sequence_id: Hashable, rows: int | None, batch: int) -> Sequence:
        """A new sequence (replacing a live one of the same id, as Triton does on START);
        TooManySequences at the cap."""
        if self.max_sequences == 0:
            raise BadRequest(f"sequence_id {sequence_id!r}: this server keeps no sequences "
                             f"(--max-sequences 0, or --workers above 1: every request of a "
                             f"sequence must reach the one process that holds its state)")
        self.purge()
        key = (model, sequence_id)
        old = self._live.pop(key, None)
        if old is None and len(self._live) >= self.max_sequences:
            raise TooManySequences(
                f"sequence_id {sequence_id!r}: {self.max_sequences} sequences are live, the "
                f"limit (--max-sequences); end one (sequence_end) or wait for idle ones to "
                f"expire ({self.idle_seconds:g} s)")
        self._gone.pop(key, None)
        sequence = Sequence(model, sequence_id, rows, batch, self.clock())
        if old is not None:
            sequence.lock = old.lock  # a request of the old one still running finishes first
        self._live[key] = sequence
        return sequence

    def get(self, model: str, sequence_id: Hashable) -> Sequence:
        """The live sequence; UnknownSequence (400) saying why when there is none."""
        self.purge()
        key = (model, sequence_id)
        if key in self._live:
            sequence = self._live[key]
            sequence.last_used = self.clock()
            return sequence
        why = self._gone.get(key, "not started on this server (state is kept in memory only: "
                                  "a restart forgets every sequence)")
        raise UnknownSequence(f"sequence_id {sequence_id!r} of model {model}: no live sequence "
                              f"({why}); begin it with sequence_start")

    def holds(self, sequence: Sequence) -> bool:
        """Whether ``sequence`` is still live (not ended, expired or started again)."""
        return self._live.get((sequence.model, sequence.id)) is sequence

    def end(self, sequence: Sequence) -> None:
        key = (sequence.model, sequence.id)
        if self._live.get(key) is sequence:
            self._forget(key, "ended by sequence_end")

    def touch(self, sequence: Sequence) -> None:
        sequence.last_used = self.clock()

    def _forget(self, key, why: str) -> None:
        self._live.pop(key, None)
        self._gone[key] = why
        while len(self._gone) > EXPIRED_REMEMBERED:
            self._gone.popitem(last=False)
