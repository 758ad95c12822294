"""Priority sort (paper §4.5): the layout, the sorted target against a plain NumPy sort, the
output count rule, the request codec (NumPy only)."""

import numpy as np
import pytest

from ntm.contract.tasks import (Difficulty, InvalidRequest, PrioritySortTask, guess_task,
                                task_from_metadata)
from ntm.contract.tasks.priority_sort import outputs, sorted_by_priority


@pytest.mark.parametrize("n, k", [(20, 16), (1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (10, 8),
                                  (30, 24), (40, 32), (100, 80)])
def test_outputs_are_round_0_8_n_the_papers_16_of_20(n, k):
    assert outputs(n) == k == max(1, round(0.8 * n))


def test_sequence_layout_and_target_is_a_plain_numpy_sort():
    task = PrioritySortTask()
    rng = np.random.default_rng(0)
    for n in (1, 3, 20, 33):
        x, y, m = task.sequence(rng, Difficulty(n))
        k = outputs(n)
        assert x.shape == (n + 1 + k, 10) and y.shape == (n + 1 + k, 8) and m.shape == (n + 1 + k,)
        assert task.time_steps(Difficulty(n)) == n + 1 + k
        vectors, priorities = x[:n, :8], x[:n, 8]
        assert set(np.unique(vectors)) <= {0.0, 1.0}
        assert ((priorities >= -1) & (priorities <= 1)).all()
        assert x[n, 9] == 1 and x[:n, 9].sum() == 0 and x[n, :9].sum() == 0
        np.testing.assert_array_equal(x[n + 1:], 0)  # no input while the answer comes
        expected = vectors[np.argsort(priorities)[::-1][:k]]
        np.testing.assert_array_equal(y[n + 1:], expected)
        np.testing.assert_array_equal(y[:n + 1], 0)
        np.testing.assert_array_equal(m, [0] * (n + 1) + [1] * k)


def test_priorities_are_uniform_on_minus_one_to_one():
    task = PrioritySortTask()
    batch = task.fixed_batch(np.random.default_rng(1), 200, Difficulty(20))
    p = batch.inputs[:, :20, 8].ravel()
    assert p.min() >= -1 and p.max() <= 1
    assert p.mean() == pytest.approx(0.0, abs=0.03)
    assert p.var() == pytest.approx(1 / 3, abs=0.02)  # uniform on [-1, 1]
    assert np.histogram(p, bins=4, range=(-1, 1))[0].min() > 0.23 * p.size


def test_ties_keep_input_order():
    vectors = np.eye(4, 8)
    np.testing.assert_array_equal(sorted_by_priority(vectors, np.array([0.1, 0.5, 0.5, -1]), 3),
                                  vectors[[1, 2, 0]])


def test_request_round_trip_with_a_perfect_output():
    task = PrioritySortTask()
    request, answer = task.request_example(np.random.default_rng(2), Difficulty(20))
    assert guess_task(request) == "priority-sort"
    assert len(set(request["priorities"])) == 20  # an example has one right answer
    encoded = task.encode(request)
    assert encoded.inputs.shape == (37, 10) and encoded.output_steps == slice(21, 37)
    assert task.within_training_range(encoded.difficulty)
    assert not task.within_training_range(Difficulty(10))
    probs = np.zeros((37, 8), np.float32)
    probs[encoded.output_steps] = answer["output"]
    decoded = task.decode(probs, encoded)
    assert decoded["output"] == answer["output"] and len(decoded["output"]) == 16
    order = np.argsort(request["priorities"])[::-1][:16]
    assert decoded["output"] == np.asarray(request["vectors"])[order].tolist()
    text = "\n".join(task.render_answer(request, decoded))
    assert "priorities" in text and "output equals them: yes" in text


def test_integer_priorities_are_numbers_too():
    encoded = PrioritySortTask().encode({"vectors": [[1] * 8, [0] * 8], "priorities": [-1, 1]})
    np.testing.assert_array_equal(encoded.inputs[:2, 8], [-1, 1])
    assert encoded.output_steps == slice(3, 5)


@pytest.mark.parametrize("request_, field", [
    ({"vectors": [[0] * 8], "priorities": [0.5, 0.1]}, "priorities"),
    ({"vectors": [[0] * 8], "priorities": 0.5}, "priorities"),
    ({"vectors": [[0] * 8, [1] * 8], "priorities": [0.5, 1.5]}, "priorities[1]"),
    ({"vectors": [[0] * 8], "priorities": ["0.5"]}, "priorities[0]"),
    ({"vectors": [[0] * 8], "priorities": [True]}, "priorities[0]"),
    ({"vectors": [[0] * 8], "priorities": [float("nan")]}, "priorities[0]"),
    ({"vectors": [[0] * 7], "priorities": [0.5]}, "vectors[0]"),
    ({"vectors": [], "priorities": []}, "vectors"),
    ({"vectors": [[0] * 8]}, "priorities"),
    ({"priorities": [0.5]}, "vectors"),
    ({"vectors": [[0] * 8], "priorities": [0.5], "repeats": 2}, "repeats"),
])
def test_bad_requests_name_the_field(request_, field):
    with pytest.raises(InvalidRequest) as err:
        PrioritySortTask().encode(request_)
    assert err.value.field == field


def test_memory_rows_hold_every_input_and_raw_lengths_never_get_fewer():
    task = PrioritySortTask()
    assert task.memory_rows(Difficulty(20)) == 22
    for n in range(1, 300):
        steps = task.time_steps(Difficulty(n))
        assert task.memory_rows_for_time_steps(steps) == n + 2
        assert task.memory_rows_for_time_steps(steps + 1) >= n + 2
    assert [task.memory_rows_for_time_steps(t) for t in (1, 2, 3)] == [3, 3, 3]


def test_metadata_rebuilds_the_task_with_its_range():
    task = PrioritySortTask(bits=6).with_training_ranges((10, 20))
    rebuilt = task_from_metadata(task.metadata())
    assert (rebuilt.bits, rebuilt.train_lengths, rebuilt.input_size) == (6, (10, 20), 8)
