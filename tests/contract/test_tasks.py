"""Task generators, masks, metrics and request codecs (NumPy only)."""

import subprocess
import sys

import numpy as np
import pytest

from ntm.contract.tasks import (CopyTask, Difficulty, InvalidRequest, RecallTask, RepeatCopyTask,
                       bit_errors, get_task, task_from_metadata, task_names)

TASK_NAMES = ["copy", "repeat-copy", "recall", "ngrams", "priority-sort"]


def test_the_registry_lists_every_built_in_task():
    from ntm.contract.tasks.registry import BUILT_IN

    assert [cls.name for cls in BUILT_IN] == TASK_NAMES
    assert set(TASK_NAMES) <= set(task_names())


def test_importing_tasks_does_not_import_tensorflow():
    code = ("import sys, ntm.contract.tasks, ntm.contract.fields, ntm.training.evaluation, "
            "ntm.training.config; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_copy_layout():
    task = CopyTask()
    x, y, m = task.sequence(np.random.default_rng(0), Difficulty(3))
    assert x.shape == (7, 9) and y.shape == (7, 8) and m.shape == (7,)
    np.testing.assert_array_equal(x[4:], 0)
    assert x[3, 8] == 1 and x[:3, 8].sum() == 0 and x[3, :8].sum() == 0
    np.testing.assert_array_equal(y[4:], x[:3, :8])
    np.testing.assert_array_equal(m, [0, 0, 0, 0, 1, 1, 1])


def test_copy_episode_of_a_given_sequence_is_what_sequence_draws():
    task = CopyTask()
    x, y, m = task.sequence(np.random.default_rng(5), Difficulty(4))
    items = x[:4, :8]
    for got, want in zip(task.episode(items), (x, y, m)):
        np.testing.assert_array_equal(got, want)
    zeros = np.zeros((2, 8), np.float32)  # all-zero items are still copied
    x0, y0, m0 = task.episode(zeros)
    assert x0[2, 8] == 1 and y0.sum() == 0 and m0.sum() == 2


def test_repeat_copy_layout():
    task = RepeatCopyTask()
    x, y, m = task.sequence(np.random.default_rng(0), Difficulty(2, 3))
    assert x.shape == (2 * 4 + 2, 10) and y.shape == (10, 9)
    assert x[2, 8] == 1 and x[2, 9] == pytest.approx(0.3)
    np.testing.assert_array_equal(y[3:9, :8], np.tile(x[:2, :8], (3, 1)))
    assert y[-1, 8] == 1 and y[:-1, 8].sum() == 0
    np.testing.assert_array_equal(m, [0, 0, 0] + [1] * 7)


def test_recall_layout_target_follows_query():
    task = RecallTask()
    rng = np.random.default_rng(3)
    for _ in range(20):
        x, y, m = task.sequence(rng, Difficulty(4))
        assert x.shape == (4 * 4 + 8, 8)
        items = [x[i * 4 + 1: i * 4 + 4, :6] for i in range(4)]
        assert all(x[i * 4, 6] == 1 for i in range(4))
        query = x[17:20, :6]
        assert x[16, 7] == 1 and x[20, 7] == 1
        idx = [i for i in range(3) if np.array_equal(items[i], query)][0]
        np.testing.assert_array_equal(y[-3:], items[idx + 1])
        assert m.sum() == 3 and m[-3:].sum() == 3


@pytest.mark.parametrize("name", TASK_NAMES)
def test_batches_are_seeded_and_padded(name):
    task = get_task(name)
    a = task.batch(np.random.default_rng([1, 2]), 16)
    b = task.batch(np.random.default_rng([1, 2]), 16)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert a.inputs.shape[1] == a.lengths.max()
    for i, length in enumerate(a.lengths):
        assert a.mask[i, length:].sum() == 0
        assert a.inputs[i, length:].sum() == 0
    assert a.inputs.dtype == np.float32


def test_bit_errors_counts_only_masked_bits():
    targets = np.zeros((2, 3, 4), np.float32)
    probs = np.zeros((2, 3, 4), np.float32)
    probs[0, 0, :] = 0.9  # unmasked: ignored
    probs[0, 2, :2] = 0.9  # masked: 2 errors
    probs[1, 1, 0] = 0.51  # masked: 1 error
    mask = np.array([[0, 1, 1], [0, 1, 1]], np.float32)
    np.testing.assert_array_equal(bit_errors(probs, targets, mask), [2, 1])


@pytest.mark.parametrize("name", TASK_NAMES)
def test_encode_decode_round_trip_with_perfect_output(name):
    task = get_task(name)
    rng = np.random.default_rng(5)
    point = Difficulty(4, 3) if name == "repeat-copy" else Difficulty(4)
    request, answer = task.request_example(rng, point)
    encoded = task.encode(request)
    assert encoded.inputs.shape[1] == task.input_size
    if name == "ngrams":  # no right answer, the best: the optimal estimator's probabilities
        decoded = task.decode(task.answer_probabilities(answer, encoded), encoded)
        assert decoded["cost_bits"] == pytest.approx(answer["cost_bits"], abs=1e-4)
        return
    # A perfect model's output: the target at the answer steps.
    probs = np.zeros((encoded.inputs.shape[0], task.output_size), np.float32)
    key = "item" if name == "recall" else "output"
    answer_rows = np.asarray(answer[key], np.float32)
    probs[encoded.output_steps][: len(answer_rows), : answer_rows.shape[1]] = answer_rows
    if name == "repeat-copy":
        probs[encoded.output_steps.stop - 1, 8] = 1.0
    decoded = task.decode(probs, encoded)
    assert decoded[key] == answer[key]


@pytest.mark.parametrize("request_, field", [
    ({"sequence": []}, "sequence"),
    ({"sequence": [[0, 1]]}, "sequence[0]"),
    ({"sequence": [[0, 1, 0, 1, 0, 1, 0, 2]]}, "sequence[0][7]"),
    ({"sequence": [[0, 1, 0, 1, 0, 1, 0, True]]}, "sequence[0][7]"),
    ({"sequence": "0101"}, "sequence"),
    ({}, "sequence"),
    ([1, 2], "request"),
    ({"sequence": [[0] * 8], "extra": 1}, "extra"),
])
def test_copy_rejects_bad_requests(request_, field):
    with pytest.raises(InvalidRequest) as err:
        CopyTask().encode(request_)
    assert err.value.field == field


def test_recall_rejects_bad_queries():
    task = RecallTask()
    items = [[[0] * 6] * 3, [[1] * 6] * 3]
    with pytest.raises(InvalidRequest, match="query"):
        task.encode({"items": items, "query": [[1, 0, 1, 0, 1, 0]] * 3})
    with pytest.raises(InvalidRequest, match="last item"):
        task.encode({"items": items, "query": [[1] * 6] * 3})
    with pytest.raises(InvalidRequest, match="items"):
        task.encode({"items": items[:1], "query": items[0]})


def test_repeat_copy_rejects_bad_repeats():
    task = RepeatCopyTask()
    for bad in (0, -1, 1.5, "3", True):
        with pytest.raises(InvalidRequest, match="repeats"):
            task.encode({"sequence": [[0] * 8], "repeats": bad})


@pytest.mark.parametrize("name", TASK_NAMES)
def test_metadata_rebuilds_task(name):
    task = get_task(name)
    rebuilt = task_from_metadata(task.metadata())
    assert type(rebuilt) is type(task)
    assert rebuilt.metadata() == task.metadata()


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("sort")


def test_render_answer_draws_each_task_its_own_way():
    rng = np.random.default_rng(0)
    for task, difficulty, words in ((CopyTask(), Difficulty(2), ["input", "output equals input: yes"]),
                                    (RepeatCopyTask(), Difficulty(2, 3), ["repeats 3", "end marker"]),
                                    (RecallTask(), Difficulty(3), ["items", "query", "answer"])):
        request, answer = task.request_example(rng, difficulty)
        answer = {**answer, "end_marker": 1.0}
        text = "\n".join(task.render_answer(request, answer))
        assert "#" in text
        for word in words:
            assert word in text, (task.name, word)


def test_guess_task_picks_the_most_specific_task():
    from ntm.contract.tasks import guess_task

    assert guess_task({"sequence": [[0] * 8]}) == "copy"
    assert guess_task({"sequence": [[0] * 8], "repeats": 2}) == "repeat-copy"
    assert guess_task({"instances": [{"items": [], "query": []}]}) == "recall"
    assert guess_task([{"sequence": []}]) == "copy"
    assert guess_task({"bits": [0, 1]}) == "ngrams"
    assert guess_task({"vectors": [[0] * 8], "priorities": [0.5]}) == "priority-sort"
    assert guess_task({"vectors": [[0] * 8]}) is None
    assert guess_task({"values": 1}) is None and guess_task(3) is None


def test_with_training_ranges_keeps_parameters_and_checks_ranges():
    task = RepeatCopyTask(bits=4).with_training_ranges((2, 5), (1, 3))
    assert (task.bits, task.train_lengths, task.train_repeats) == (4, (2, 5), (1, 3))
    assert CopyTask().with_training_ranges((1, 40)).train_lengths == (1, 40)
    with pytest.raises(ValueError, match="has no repeats"):
        CopyTask().with_training_ranges(repeats=(1, 2))
    with pytest.raises(ValueError, match="impossible"):
        RecallTask().with_training_ranges((1, 4))


def test_repeat_copy_bars_guard_the_corners_of_the_training_range():
    """A bundled repeat-copy must be checked where in-range failures showed (few long
    repeats, many short ones), not only at its middle; and at twice the length."""
    task = RepeatCopyTask()
    bars = task.quality_bars()
    (low_length, high_length), (low_repeats, high_repeats) = task.train_lengths, task.train_repeats
    inside = [point for point in bars if task.within_training_range(point)]
    assert {(p.length, p.repeats) for p in inside} >= {
        (low_length, high_repeats), (high_length, low_repeats), (high_length, high_repeats)}
    assert all(bars[p] <= 0.1 for p in inside)
    assert bars[Difficulty(2 * high_length, high_repeats)] == 5.0


def test_copy_blank_runs_blank_a_short_run_of_items_and_stay_copies():
    from ntm.contract.tasks.base import Batch

    task = CopyTask()
    batch = task.batch(np.random.default_rng(3), 64)
    before = (batch.inputs.copy(), batch.targets.copy())
    blanked = task.with_blank_runs(batch, np.random.default_rng(4), 1.0)
    assert isinstance(blanked, Batch) and blanked.mask is batch.mask
    np.testing.assert_array_equal(batch.inputs, before[0])  # the batch given is left alone
    np.testing.assert_array_equal(batch.targets, before[1])
    changed_sequences = 0
    for i, time_steps in enumerate(batch.lengths):
        length = (int(time_steps) - 1) // 2
        items, original = blanked.inputs[i, :length, :8], batch.inputs[i, :length, :8]
        np.testing.assert_array_equal(blanked.targets[i, length + 1:2 * length + 1], items)
        np.testing.assert_array_equal(blanked.inputs[i, length:], batch.inputs[i, length:])
        changed = np.nonzero((items != original).any(axis=1))[0]
        if length < 3:
            assert len(changed) == 0
        elif len(changed):  # a run may land on items that were blank already
            changed_sequences += 1
            assert changed[-1] - changed[0] + 1 <= 5 and not items[changed[0]:changed[-1] + 1].any()
    assert changed_sequences >= 40
    same = task.with_blank_runs(batch, np.random.default_rng(4), 1.0)
    np.testing.assert_array_equal(same.inputs, blanked.inputs)  # seeded
    untouched = task.with_blank_runs(batch, np.random.default_rng(4), 0.0)
    np.testing.assert_array_equal(untouched.inputs, batch.inputs)


def test_tasks_that_cannot_blank_items_say_so():
    assert CopyTask.blanks_items and not RecallTask.blanks_items
    with pytest.raises(NotImplementedError, match="recall"):
        RecallTask().with_blank_runs(None, np.random.default_rng(0), 0.5)


def test_a_training_range_of_one_value_reads_as_that_value():
    assert get_task("copy").training_range() == "length 1-20"
    assert get_task("priority-sort").training_range() == "vectors 20"
    assert get_task("repeat-copy").training_range() == "length 1-10, repeats 1-10"
