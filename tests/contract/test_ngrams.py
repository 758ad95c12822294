"""Dynamic N-grams (paper §4.4): the table, the bits drawn from it, the optimal Bayesian
estimator against direct definitions, the cost in bits, the request codec (NumPy only)."""

import math

import numpy as np
import pytest

from ntm.contract.tasks import Difficulty, InvalidRequest, NGramsTask, get_task, guess_task
from ntm.contract.tasks.ngrams import (contexts, cost_in_bits, ngram_table,
                                       optimal_probabilities, sample_bits)


def brute_force_optimal(bits, context_bits):
    """The estimator straight from its definition: for each bit, count what followed the same
    context before it, one step at a time."""
    padded = [0] * context_bits + [int(b) for b in bits]
    out = []
    for t in range(len(bits)):
        context = tuple(padded[t:t + context_bits])
        ones = zeros = 0
        for s in range(t):
            if tuple(padded[s:s + context_bits]) == context:
                ones += padded[s + context_bits] == 1
                zeros += padded[s + context_bits] == 0
        out.append((ones + 0.5) / (ones + zeros + 1))
    return np.array(out)


def beta_bernoulli_bits(bits, context_bits):
    """-log2 of the sequence's probability under the estimator's model: each context's
    next-bit probability p ~ Beta(1/2, 1/2) integrated out, B(N1 + 1/2, N0 + 1/2) / B(1/2, 1/2)
    per context (the estimator is the chain rule of this marginal)."""
    def log_beta(a, b):
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    ctx = contexts(np.asarray(bits), context_bits)
    total = 0.0
    for c in set(ctx.tolist()):
        following = np.asarray(bits)[ctx == c]
        ones, zeros = float(following.sum()), float(len(following) - following.sum())
        total += log_beta(ones + 0.5, zeros + 0.5) - log_beta(0.5, 0.5)
    return -total / math.log(2)


def test_a_tiny_case_computed_by_hand():
    # context_bits 1: the context is the bit before (0 before the first).
    # t  bit  context  N1 N0 before  P(1)
    # 0  0    0        0  0          1/2
    # 1  0    0        0  1          1/4
    # 2  0    0        0  2          1/6
    # 3  1    0        0  3          1/8
    # 4  0    1        0  0          1/2
    # 5  0    0        1  3          3/10
    bits = [0, 0, 0, 1, 0, 0]
    np.testing.assert_array_equal(contexts(np.array(bits), 1), [0, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(optimal_probabilities(np.array(bits), 1),
                               [1 / 2, 1 / 4, 1 / 6, 1 / 8, 1 / 2, 3 / 10])


def test_contexts_read_the_five_bits_before_with_the_latest_least_significant():
    bits = np.array([1, 0, 0, 0, 0, 0, 1, 1])
    # bit 5: before it 1 0 0 0 0 (oldest first) -> 0b10000; bit 7: 0 0 0 0 1 -> 1 ...
    np.testing.assert_array_equal(contexts(bits, 5), [0, 1, 2, 4, 8, 16, 0, 1])


@pytest.mark.parametrize("context_bits", [1, 2, 5])
def test_the_estimator_matches_its_definition_counted_directly(context_bits):
    rng = np.random.default_rng(context_bits)
    for length in (1, 7, 60):
        bits = sample_bits(rng, ngram_table(rng, context_bits), length)
        np.testing.assert_allclose(optimal_probabilities(bits, context_bits),
                                   brute_force_optimal(bits, context_bits), rtol=1e-12)


def test_the_estimators_cost_is_the_beta_bernoulli_marginal_likelihood():
    rng = np.random.default_rng(3)
    for _ in range(5):
        bits = sample_bits(rng, ngram_table(rng, 5), 200)
        cost = cost_in_bits(optimal_probabilities(bits, 5), bits)
        assert cost == pytest.approx(beta_bernoulli_bits(bits, 5), rel=1e-9)


def test_the_estimator_works_on_a_batch_row_by_row():
    rng = np.random.default_rng(4)
    rows = np.stack([sample_bits(rng, ngram_table(rng, 5), 50) for _ in range(3)])
    together = optimal_probabilities(rows, 5)
    for row, probabilities in zip(rows, together):
        np.testing.assert_array_equal(probabilities, optimal_probabilities(row, 5))


def test_the_estimator_beats_a_coin_and_nears_the_tables_entropy_on_long_sequences():
    rng = np.random.default_rng(5)
    coin, optimal = [], []
    for _ in range(20):  # 200 bits, the paper's length: a coin costs 1 bit per bit
        bits = sample_bits(rng, ngram_table(rng, 5), 200)
        coin.append(cost_in_bits(np.full(200, 0.5), bits))
        optimal.append(cost_in_bits(optimal_probabilities(bits, 5), bits))
    assert np.mean(coin) == pytest.approx(200) and np.mean(optimal) < 0.8 * np.mean(coin)
    # Long sequences: the estimator's cost per bit comes within a few hundredths of a bit of
    # the true table's (the oracle knows the table; the estimator pays ~log2(n)/2 per context).
    for seed in range(3):
        rng = np.random.default_rng([6, seed])
        table = ngram_table(rng, 5)
        bits = sample_bits(rng, table, 20000)
        oracle = cost_in_bits(table[contexts(bits, 5)], bits) / bits.size
        estimator = cost_in_bits(optimal_probabilities(bits, 5), bits) / bits.size
        assert 0 < estimator - oracle < 0.03


def test_tables_are_drawn_from_beta_one_half():
    """Beta(1/2, 1/2): mean 1/2, variance 1/8, and its U shape puts about 41% of the mass
    below 0.1 or above 0.9 (arcsine law: (4 / pi) asin(sqrt(0.1)))."""
    tables = np.concatenate([ngram_table(np.random.default_rng(i), 5) for i in range(400)])
    assert tables.shape == (400 * 32,) and ((tables >= 0) & (tables <= 1)).all()
    assert tables.mean() == pytest.approx(0.5, abs=0.01)
    assert tables.var() == pytest.approx(1 / 8, abs=0.005)
    edges = ((tables < 0.1) | (tables > 0.9)).mean()
    assert edges == pytest.approx(4 / math.pi * math.asin(math.sqrt(0.1)), abs=0.015)


def test_bits_follow_their_table():
    """Each context's next bits are ones at the rate its table entry says."""
    table = np.random.default_rng(7).uniform(0.05, 0.95, 32)
    bits = sample_bits(np.random.default_rng(8), table, 100_000)
    ctx = contexts(bits, 5)
    for c in range(32):
        following = bits[ctx == c]
        assert len(following) > 500
        assert following.mean() == pytest.approx(table[c], abs=4.5 * np.sqrt(0.25 / len(following)))


def test_the_first_bits_come_from_the_zero_padded_context():
    table = np.zeros(32)
    table[0] = 1.0  # after 00000 always 1, else always 0
    bits = sample_bits(np.random.default_rng(0), table, 12)
    np.testing.assert_array_equal(bits, [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])


def test_sequence_layout_feeds_the_bit_before_and_scores_every_bit():
    task = NGramsTask()
    x, y, m = task.sequence(np.random.default_rng(0), Difficulty(200))
    assert x.shape == (201, 1) and y.shape == (201, 1) and m.shape == (201,)
    assert task.time_steps(Difficulty(200)) == 201 and (task.input_size, task.output_size) == (1, 1)
    assert x[0, 0] == 0 and set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_array_equal(x[1:, 0], y[:-1, 0])
    assert m[:200].all() and m[200] == 0 and y[200, 0] == 0


def test_cost_in_bits_is_cross_entropy_in_bits_over_the_scored_steps():
    bits = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    p = np.array([[0.5, 0.5, 0.25], [0.5, 0.0, 1.0]])
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    cost = cost_in_bits(p, bits, mask)
    assert cost[0] == pytest.approx(1 + 1 + 2)
    assert cost[1] == pytest.approx(1 + 0)  # certain and right: 0 bits; unscored step: none
    assert cost_in_bits(np.array([0.0]), np.array([1.0])) == pytest.approx(-math.log2(1e-7))


def test_measures_report_the_cost_beside_the_optimal_estimators():
    task = NGramsTask()
    batch = task.fixed_batch(np.random.default_rng(1), 6, Difficulty(200))
    bits = batch.targets[..., 0]
    optimal = optimal_probabilities(bits, 5)[..., None]
    measured = task.measures(optimal, batch)
    np.testing.assert_allclose(measured["cost_bits"], measured["optimal_bits"])
    np.testing.assert_allclose(measured["excess_bits"], 0.0)
    coin = task.measures(np.full_like(batch.targets, 0.5), batch)
    np.testing.assert_allclose(coin["cost_bits"], 200.0)  # the unscored last step is left out
    assert (coin["excess_bits"] > 0).all()


def test_the_evaluation_table_carries_the_tasks_measures():
    """ntm evaluate's table (NumPy: any probability function) gets cost columns for N-grams
    and none for a task without measures."""
    from ntm.training.evaluation import evaluate, format_table

    task = NGramsTask()

    def optimal_model(inputs):
        """inputs [batch, L + 1, 1] (0, then the bits) -> the estimator's P(1) at each step:
        at step t it has seen the bits before t, as a model has."""
        bits = np.concatenate([inputs[:, 1:, 0], np.zeros((len(inputs), 1))], axis=1)
        return optimal_probabilities(bits, 5)[..., None]

    rows = evaluate(optimal_model, task, [Difficulty(20), Difficulty(200)], sequences=8,
                    batch_size=3)
    assert [r.length for r in rows] == [20, 200]
    for row in rows:
        assert set(row.measures) == {"cost_bits", "optimal_bits", "excess_bits"}
        assert row.measures["excess_bits"] == pytest.approx(0.0, abs=1e-9)
        assert 0 < row.measures["optimal_bits"] < row.length
    table = format_table(rows, task.length_name)
    assert "optimal_bits" in table.splitlines()[0] and "excess_bits" in table
    copy = get_task("copy")
    [plain] = evaluate(lambda x: np.zeros((*x.shape[:2], 8)), copy, [Difficulty(3)], 4)
    assert plain.measures is None and "cost" not in format_table([plain])


def test_request_round_trip_with_the_optimal_estimator_as_the_model():
    task = NGramsTask()
    request, answer = task.request_example(np.random.default_rng(2), Difficulty(30))
    assert guess_task(request) == "ngrams" and len(request["bits"]) == 30
    encoded = task.encode(request)
    assert encoded.inputs.shape == (31, 1) and encoded.output_steps == slice(0, 31)
    np.testing.assert_array_equal(encoded.inputs[1:, 0], request["bits"])
    decoded = task.decode(task.answer_probabilities(answer, encoded), encoded)
    assert decoded["cost_bits"] == pytest.approx(answer["cost_bits"], abs=1e-4)
    assert decoded["cost_bits"] == pytest.approx(decoded["optimal_cost_bits"], abs=1e-4)
    assert decoded["next_bit_probability"] == answer["next_bit_probability"] == \
        decoded["optimal_next_bit_probability"]
    assert decoded["next_bit"] == int(answer["next_bit_probability"] > 0.5)
    assert np.asarray(decoded["probabilities"]).shape == (31, 1)
    text = "\n".join(task.render_answer(request, decoded))
    assert "optimal Bayesian estimator" in text and "next bit" in text


def test_a_request_shorter_than_training_is_within_range_a_longer_one_is_not():
    task = NGramsTask()
    assert task.within_training_range(Difficulty(1)) and task.within_training_range(Difficulty(200))
    assert not task.within_training_range(Difficulty(201))


@pytest.mark.parametrize("request_, field", [
    ({"bits": []}, "bits"),
    ({"bits": "0101"}, "bits"),
    ({"bits": [0, 1, 2]}, "bits[2]"),
    ({"bits": [0, True]}, "bits[1]"),
    ({"bits": [0, 0.5]}, "bits[1]"),
    ({"bits": [[0, 1]]}, "bits[0]"),
    ({}, "bits"),
    ({"bits": [0], "sequence": [[0] * 8]}, "sequence"),
    ("0101", "request"),
])
def test_bad_requests_name_the_field(request_, field):
    with pytest.raises(InvalidRequest) as err:
        NGramsTask().encode(request_)
    assert err.value.field == field


def test_memory_rows_grow_in_the_trained_proportion_of_bits_to_rows():
    """A history never wraps more than in training (200 bits in 128 rows), and there is always
    a row per context plus one."""
    task = NGramsTask()
    assert task.memory_rows(Difficulty(200)) == 128 and task.memory_rows(Difficulty(201)) == 129
    assert task.memory_rows(Difficulty(1)) == 33
    for bits in (1, 60, 200, 201, 999, 100_000):
        rows = task.memory_rows(Difficulty(bits))
        assert bits / rows <= 200 / 128
        assert task.memory_rows_for_time_steps(task.time_steps(Difficulty(bits))) == rows
    assert task.memory_rows_for_time_steps(1) == 33
    assert NGramsTask.model_defaults == {"grow_strength_power": 0.0}
