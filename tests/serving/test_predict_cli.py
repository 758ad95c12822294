"""``ntm predict`` through Click's CliRunner: examples answered right, bad input named."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ntm.cli.main import cli
from ntm.contract.tasks import Difficulty, get_task
from tests.serving.conftest import EXAMPLES


def run(*args, input=None):
    return CliRunner().invoke(cli, ["predict", *args], input=input)


def test_recall_example_is_answered_correctly(bundled):
    request = json.loads((EXAMPLES / "recall.json").read_text())
    idx = [i for i, item in enumerate(request["items"]) if item == request["query"]][0]
    result = run(str(EXAMPLES / "recall.json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["predictions"][0]["item"] == request["items"][idx + 1]


@pytest.mark.parametrize("example", ["copy.json", "repeat-copy.json", "copy-batch.json"])
def test_shipped_examples_get_the_right_answer(example, bundled):
    payload = json.loads((EXAMPLES / example).read_text())
    instances = payload["instances"] if "instances" in payload else [payload]
    task = "repeat-copy" if "repeats" in instances[0] else "copy"
    assert task in bundled, f"bundled {task} model missing"
    result = run(str(EXAMPLES / example))
    assert result.exit_code == 0, result.output
    for request, answer in zip(instances, json.loads(result.output)["predictions"]):
        expected = request["sequence"] * request.get("repeats", 1)
        assert answer["output"] == expected


def test_the_ngrams_example_is_answered_by_its_bundled_model(bundled):
    """No --model: the request's field picks the bundled N-grams model; its cost lies near the
    optimal estimator's on the same bits (its card: about a bit over on average; one sequence
    may fall either side) and far under a fair coin's 200."""
    bits = json.loads((EXAMPLES / "ngrams.json").read_text())["bits"]
    result = run(str(EXAMPLES / "ngrams.json"))
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.output)["predictions"]
    assert len(answer["probabilities"]) == len(bits) + 1 and answer["memory_size"] == 128
    assert answer["next_bit"] == int(answer["next_bit_probability"] > 0.5)
    assert abs(answer["cost_bits"] - answer["optimal_cost_bits"]) <= 15
    assert answer["cost_bits"] < 0.8 * len(bits)


def test_the_priority_sort_example_is_answered_by_its_bundled_model(bundled):
    """No --model: the bundled priority-sort model answers the 16 highest-priority vectors;
    it is still training (its card), so the test asks for shape and that it beats chance."""
    request = json.loads((EXAMPLES / "priority-sort.json").read_text())
    order = np.argsort(-np.asarray(request["priorities"]), kind="stable")[:16]
    expected = np.asarray(request["vectors"])[order]
    result = run(str(EXAMPLES / "priority-sort.json"))
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.output)["predictions"]
    output = np.asarray(answer["output"])
    assert output.shape == (16, 8) and answer["within_training_range"]
    assert (output != expected).sum() < 0.4 * expected.size  # chance: half the bits wrong


def test_json_lines_and_stdin(bundled):
    text = (EXAMPLES / "recall.jsonl").read_text()
    result = run("-", "--model", "recall", input=text)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["predictions"]) == len(text.strip().splitlines())


def test_pretty_rendering(bundled):
    result = run(str(EXAMPLES / "recall.json"), "--pretty")
    assert result.exit_code == 0 and "query" in result.output and "#" in result.output


def test_output_file_written_whole(tmp_path, bundled):
    out = tmp_path / "answers.json"
    result = run(str(EXAMPLES / "recall.json"), "-o", str(out))
    assert result.exit_code == 0
    assert "predictions" in json.loads(out.read_text())


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"items": [[[0,0,0,0,0,0]]], "query": [[0,0,0,0,0,0]]}', "items: must be a list of at least 2"),
    ('{"items": [[[0,0,0]], [[1,1,1]]], "query": [[0,0,0]]}', "items[0][0]: must hold exactly 6 bits"),
    ('{"items": [[[0,0,0,0,0,2],[0,0,0,0,0,0],[0,0,0,0,0,0]], [[1,1,1,1,1,1],[0,0,0,0,0,0],'
     '[0,0,0,0,0,0]]], "query": [[0,0,0,0,0,0]]}', "must be 0 or 1, got 2"),
    ("[]", "at least one request"),
    ('{"hello": 1}', "cannot tell the task"),
])
def test_invalid_input_names_the_field(tmp_path, content, message, bundled):
    path = tmp_path / "in.json"
    path.write_text(content)
    out = tmp_path / "out.json"
    out.write_text("keep me")
    result = run(str(path), "--model", "recall", "-o", str(out)) if "tell" not in message \
        else run(str(path), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert out.read_text() == "keep me"  # nothing partially written


def test_empty_sequence_and_unknown_model(tmp_path, tiny_exports):
    path = tmp_path / "in.json"
    path.write_text('{"sequence": []}')
    result = run(str(path), "--model", str(tiny_exports["dynamic"]))
    assert result.exit_code == 1 and "sequence: must hold at least 1 vector" in result.output
    result = run(str(path), "--model", "nosuch")
    assert result.exit_code == 1 and "unknown model 'nosuch'" in result.output


def test_too_long_for_a_fixed_length_model(tmp_path, tiny_exports):
    path = tmp_path / "in.json"
    task = get_task("copy")
    request, _ = task.request_example(np.random.default_rng(0), Difficulty(6))
    path.write_text(json.dumps(request))
    result = run(str(path), "--model", str(tiny_exports["fixed"]))
    assert result.exit_code == 1 and "accepts at most 9" in result.output


def test_missing_input_file():
    result = run("/nonexistent/in.json")
    assert result.exit_code == 1 and "cannot read" in result.output
