"""The export proof's tolerance: 1e-4, widened only to a multiple of TensorFlow's own
sensitivity at the same point (its output change under a tiny input change). NumPy stand-ins
for both engines."""

import numpy as np

from ntm.export.verify import (NOISE_FACTOR, PERTURBATION, TOLERANCE, ProofPoint, compare,
                           growth_point, verification_points)
from ntm.contract.tasks import Difficulty, get_task

TASK = get_task("copy")
POINTS = [ProofPoint(Difficulty(3), 128)]


def engine(gain: float = 0.0, offset: float = 0.0):
    """forward(x) -> (probabilities, attention): 0.5 + offset + gain * sum(x) per row, so a
    change of every input by +-PERTURBATION moves outputs by up to gain * PERTURBATION * size."""
    def forward(x, memory_size):
        p = 0.5 + offset + gain * x.sum(axis=(1, 2), keepdims=True)
        p = np.broadcast_to(p, (x.shape[0], x.shape[1], TASK.output_size))
        return p, np.zeros((x.shape[0], x.shape[1], 2, 4))
    return forward


def test_well_conditioned_points_keep_the_strict_tolerance():
    [c] = compare(engine(), engine(offset=5e-5), TASK, POINTS)
    assert c.noise_floor == 0 and c.tolerance == TOLERANCE and c.passed
    [c] = compare(engine(), engine(offset=2e-4), TASK, POINTS)
    assert not c.passed


def test_tolerance_follows_the_models_own_sensitivity():
    chaotic = engine(gain=100.0)  # amplifies input changes 100x per input value
    [c] = compare(chaotic, engine(gain=100.0, offset=1e-4), TASK, POINTS)
    assert c.noise_floor > 0 and c.tolerance == max(TOLERANCE, NOISE_FACTOR * c.noise_floor)
    assert c.noise_floor <= 100.0 * PERTURBATION * 7 * TASK.input_size + 1e-9
    [c] = compare(chaotic, engine(gain=100.0, offset=0.9 * c.tolerance), TASK, POINTS)
    assert c.passed
    [c] = compare(chaotic, engine(gain=100.0, offset=1.1 * c.tolerance), TASK, POINTS)
    assert not c.passed


def test_a_dynamic_export_is_proven_with_grown_memory():
    points = verification_points(TASK, None, trained_rows=128)
    assert points[-1] == ProofPoint(Difficulty(127), 256)  # 127 + 2 rows > 128
    assert [p.memory_size for p in points[:-1]] == [128, 128, 128]
    recall = get_task("recall")
    grown = growth_point(recall, 128)
    assert recall.memory_rows(grown) > 128 >= recall.memory_rows(Difficulty(grown.length - 1))


def test_a_task_whose_rows_never_grow_is_proven_with_grown_memory_at_its_training_length(
        counting_ngrams):
    assert growth_point(counting_ngrams, 128) is None
    assert verification_points(counting_ngrams, None, trained_rows=128)[-1] == \
        ProofPoint(Difficulty(200), 256)
    ngrams = get_task("ngrams")  # the built-in one: rows in proportion past 200 bits
    assert growth_point(ngrams, 128) == Difficulty(201)
    assert verification_points(ngrams, None, trained_rows=128)[-1] == \
        ProofPoint(Difficulty(201), 256)


def test_a_fixed_length_export_is_proven_at_its_own_rows():
    points = verification_points(TASK, 81, trained_rows=16, fixed_rows=64)
    assert {p.memory_size for p in points} == {64}
    assert max(TASK.time_steps(p.difficulty) for p in points) <= 81
