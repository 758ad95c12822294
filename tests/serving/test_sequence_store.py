"""The sequence store on its own (a fake clock): cap, idle timeout, end, start again."""

import pytest

from ntm.serving.errors import BadRequest
from ntm.serving.sequences import SequenceStore, TooManySequences, UnknownSequence


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_cap_end_and_start_again():
    store = SequenceStore(max_sequences=2, idle_seconds=10, clock=Clock())
    a = store.start("m", 1, rows=128, batch=1)
    store.start("m", "b", rows=128, batch=1)
    with pytest.raises(TooManySequences, match="2 sequences are live"):
        store.start("m", 3, 128, 1)
    again = store.start("m", 1, 256, 2)  # a START on a live id begins it again: no new place
    assert store.get("m", 1) is again and not store.holds(a) and again.rows == 256
    store.end(again)
    with pytest.raises(UnknownSequence, match="ended by sequence_end"):
        store.get("m", 1)
    assert len(store) == 1 and store.start("m", 3, 128, 1)
    # ids are per model:
    with pytest.raises(UnknownSequence, match="not started on this server"):
        store.get("other", 3)


def test_idle_sequences_expire_and_say_so():
    clock = Clock()
    store = SequenceStore(max_sequences=5, idle_seconds=10, clock=clock)
    store.start("m", 1, 128, 1)
    clock.now = 9
    store.get("m", 1)  # a request keeps it alive
    clock.now = 18
    assert len(store) == 1
    clock.now = 19.5
    assert len(store) == 0 and store.expired_total == 1
    with pytest.raises(UnknownSequence, match=r"expired after 10 s idle"):
        store.get("m", 1)


def test_no_sequences_when_disabled():
    store = SequenceStore(max_sequences=0)
    with pytest.raises(BadRequest, match="keeps no sequences"):
        store.start("m", 1, 128, 1)
