"""Choosing the memory rows of a request: buckets of the trained size, and the limit."""

import pytest

from ntm.contract.memory_plan import (UNLIMITED_STEPS, MemoryLimitExceeded, bucket_table,
                                     choose_memory_size, memory_buckets)
from ntm.contract.tasks import Difficulty, get_task


def test_buckets_double_from_the_trained_size_up_to_the_limit():
    assert memory_buckets(128) == [128, 256, 512, 1024, 2048]
    assert memory_buckets(128, 1000) == [128, 256, 512]
    assert memory_buckets(16, 40) == [16, 32]
    assert memory_buckets(128, 64) == [128]


@pytest.mark.parametrize("needed, size", [(1, 128), (128, 128), (129, 256), (1002, 1024),
                                          (1025, 2048), (2048, 2048)])
def test_the_smallest_bucket_that_holds_the_request(needed, size):
    assert choose_memory_size(needed, 128) == size


def test_more_than_the_largest_bucket_names_the_limit():
    with pytest.raises(MemoryLimitExceeded, match="needs 2049 memory rows; the limit is 2048"):
        choose_memory_size(2049, 128)
    with pytest.raises(MemoryLimitExceeded, match="limit is 512"):
        choose_memory_size(600, 128, maximum=1000)


@pytest.mark.parametrize("name, difficulty, rows", [
    ("copy", Difficulty(20), 22), ("copy", Difficulty(1000), 1002),
    ("repeat-copy", Difficulty(10, 1000), 12),
    ("recall", Difficulty(6), 35),  # 30 steps before the answer, at most 7/8 full
    ("recall", Difficulty(26), 126), ("recall", Difficulty(27), 131),
    ("ngrams", Difficulty(20), 33),  # never fewer than a row per context, plus one
    ("ngrams", Difficulty(200), 128), ("ngrams", Difficulty(201), 129),  # 200 bits in 128 rows
    ("ngrams", Difficulty(1000), 640),
    ("priority-sort", Difficulty(20), 22), ("priority-sort", Difficulty(200), 202)])
def test_rows_a_request_needs(name, difficulty, rows):
    task = get_task(name)
    assert task.memory_rows(difficulty) == rows
    # Raw tensors of the same length are never given fewer rows than the request needs.
    assert task.memory_rows_for_time_steps(task.time_steps(difficulty)) >= rows


@pytest.mark.parametrize("name, inside, outside", [
    ("copy", [Difficulty(1), Difficulty(20)], [Difficulty(21), Difficulty(1000)]),
    ("recall", [Difficulty(2), Difficulty(6)], [Difficulty(7), Difficulty(30)]),
    ("repeat-copy", [Difficulty(1, 1), Difficulty(10, 10)],
     [Difficulty(11, 5), Difficulty(5, 11), Difficulty(10, 1000)]),
])
def test_within_training_range_at_the_edges(name, inside, outside):
    task = get_task(name)
    assert all(task.within_training_range(d) for d in inside)
    assert not any(task.within_training_range(d) for d in outside)


def test_a_task_whose_rows_never_grow_holds_any_length_in_every_bucket(counting_ngrams):
    buckets, longest = bucket_table(128, counting_ngrams.memory_rows_for_time_steps, 512)
    assert buckets == [128, 256, 512] and longest == [UNLIMITED_STEPS] * 3
    assert bucket_table(128, get_task("copy").memory_rows_for_time_steps, 256)[1] == [254, 510]
