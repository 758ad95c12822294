"""ModelRuntime on real exported models: metadata, arrays, task requests, limits."""

import math

import numpy as np
import pytest

from ntm.contract.tasks import Difficulty, bit_errors, get_task
from ntm.serving.errors import BadRequest, ModelLoadError, Unprocessable
from ntm.serving.runtime import ModelRuntime, RuntimeOptions
from ntm.serving.plane import predict_tasks


def test_bundled_recall_answers_correctly(bundled):
    runtime = ModelRuntime(bundled["recall"])
    assert runtime.task.name == "recall" and runtime.fixed_length is None
    rng = np.random.default_rng(7)
    requests, answers = zip(*[runtime.task.request_example(rng, Difficulty(n))
                              for n in (2, 4, 6, 6, 3)])
    predicted = predict_tasks(runtime, list(requests))
    assert [p["item"] for p in predicted] == [a["item"] for a in answers]


def test_batched_run_equals_single_runs(bundled):
    runtime = ModelRuntime(bundled["recall"])
    batch = runtime.task.batch(np.random.default_rng(1), 6)
    probs, attention = runtime.run(batch.inputs)
    assert attention.shape == (6, batch.inputs.shape[1], runtime.num_heads, runtime.trained_memory_size)
    for i, length in enumerate(batch.lengths):
        alone, _ = runtime.run(batch.inputs[i: i + 1, :length])
        np.testing.assert_allclose(alone[0], probs[i, :length], atol=1e-5)


def test_return_attention(bundled):
    runtime = ModelRuntime(bundled["recall"])
    request, _ = runtime.task.request_example(np.random.default_rng(2), Difficulty(3))
    answer = predict_tasks(runtime, [{**request, "return_attention": True}])[0]
    steps = runtime.task.encode(request).inputs.shape[0]
    assert len(answer["attention"]["read"]) == 1 and len(answer["attention"]["write"]) == 1
    read = np.asarray(answer["attention"]["read"][0])
    assert read.shape == (steps, runtime.trained_memory_size)
    np.testing.assert_allclose(read.sum(-1), 1.0, atol=1e-3)
    with pytest.raises(BadRequest, match="return_attention"):
        predict_tasks(runtime, [{**request, "return_attention": "yes"}])


def test_fixed_length_model_pads_and_rejects_longer(tiny_exports):
    fixed = ModelRuntime(tiny_exports["fixed"])
    dynamic = ModelRuntime(tiny_exports["dynamic"])
    assert fixed.fixed_length == 9 and fixed.max_time_steps == 9
    x = np.random.default_rng(0).integers(0, 2, (2, 5, 9)).astype(np.float32)
    p_fixed, a_fixed = fixed.run(x)
    p_dyn, _ = dynamic.run(x)
    assert p_fixed.shape == (2, 5, 8) and a_fixed.shape[1] == 5
    np.testing.assert_allclose(p_fixed, p_dyn, atol=1e-5)
    with pytest.raises(Unprocessable, match="fixed-length model's length is 9"):
        fixed.run(np.zeros((1, 10, 9), np.float32))
    with pytest.raises(Unprocessable, match="at most 9"):
        predict_tasks(fixed, [{"sequence": [[0] * 8] * 5}])  # 11 steps


def test_dynamic_limit_and_bad_arrays(bundled):
    runtime = ModelRuntime(bundled["recall"], options=RuntimeOptions(max_time_steps=20))
    with pytest.raises(Unprocessable, match="limit is 20"):
        runtime.run(np.zeros((1, 21, 8), np.float32))
    for bad, message in [(np.zeros((1, 0, 8)), "at least one time step"),
                         (np.zeros((0, 3, 8)), "at least one sequence"),
                         (np.zeros((1, 3, 5)), r"shape \[batch, time, 8\]"),
                         (np.full((1, 3, 8), np.nan), "finite"),
                         (np.array([["a"]]), "numbers")]:
        with pytest.raises(BadRequest, match=message):
            runtime.run(bad)


def test_model_files_that_are_not_ours(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ModelRuntime(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="junk.onnx is not a loadable ONNX model"):
        ModelRuntime(junk)


def test_model_without_metadata(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["inputs"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                             [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ModelLoadError, match="plain.onnx has no ntm metadata"):
        ModelRuntime(path)


def test_bundled_models_do_in_range_what_their_cards_say(bundled):
    """At the top of its training range each bundled model scores as its card says (100
    fresh sequences against the card's 10,000: within sampling error) and meets its task's
    bar there; N-grams, whose wrong bits are no failures, by its excess cost over the optimal
    estimator."""
    from ntm.serving.models import model_card

    for name, path in bundled.items():
        runtime = ModelRuntime(path)
        task = runtime.task
        assert runtime.metadata["ntm.task"]["task"] == name
        assert runtime.metadata["ntm.task"]["input_size"] == task.input_size
        point = task.hardest_training_difficulty
        card = next(r for r in model_card(name)["evaluation"]
                    if (r["length"], r["repeats"]) == (point.length, point.repeats))
        batch = task.fixed_batch(np.random.default_rng(11), 100, point)
        probs, _ = runtime.run(batch.inputs)
        if not task.exact_answers:
            excess = task.measures(probs, batch)["excess_bits"].mean()
            assert abs(excess - card["measures"]["excess_bits"]) <= 1.0, (name, excess)
            continue
        bits = bit_errors(probs, batch.targets, batch.mask).mean()
        assert abs(bits - card["mean_bits"]) <= 0.15 * card["mean_bits"] + 0.1, (name, bits)
        assert bits <= task.quality_bars().get(point, math.inf), name


def test_task_metadata_matches_the_task_registry(bundled):
    for name, path in bundled.items():
        assert ModelRuntime(path).task.metadata() == get_task(name).metadata()


def test_return_probabilities_false_trims_the_answer(bundled):
    runtime = ModelRuntime(bundled["copy"])
    request = {"sequence": [[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1, 1, 0]]}
    full, trimmed = predict_tasks(runtime, [request, {**request, "return_probabilities": False}])
    assert "probabilities" in full and "probabilities" not in trimmed
    assert trimmed == {k: v for k, v in full.items() if k != "probabilities"}
    with pytest.raises(BadRequest, match=r"^return_probabilities: must be true or false"):
        predict_tasks(runtime, [{**request, "return_probabilities": "no"}])
    with pytest.raises(BadRequest, match=r"^instances\[1\]\.return_attention: must be true or "):
        predict_tasks(runtime, [request, {**request, "return_attention": "yes"}])
