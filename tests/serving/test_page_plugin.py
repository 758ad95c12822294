"""The browser page with a task it has no editor for: the ``invert`` plug-in of
``tests/plugin_task`` (see tests/test_plugin_task.py), served beside the bundled copy model.

The page builds copy, repeat-copy and recall requests with editors of its own; for any other
task it offers a JSON editor holding an example the task built itself (``page/cards.json``),
posts it to the task API with ``return_attention`` like the others, shows the answer as JSON
and draws the read and write weightings over time. These tests do that in headless Chromium
against a real ``ntm serve`` process with the plug-in folder on PYTHONPATH, and check the errors
a person meets: JSON that does not parse (shown, nothing sent) and a request the server refuses
(its message shown). Every wait is on something the page shows.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.serving.conftest import REPO, ServerProcess
from tests.serving.test_page import Visit, browser, visit  # noqa: F401 (fixtures)

PLUGIN_DIR = REPO / "tests" / "plugin_task"
REQUEST_JSON = "[data-testid=request-json]"
ANSWER_JSON = "[data-testid=answer-json]"
RUN = "[data-testid=run]"
ERROR = "#error"


def plugin_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(
        [str(PLUGIN_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.fixture(scope="module")
def invert_export(tmp_path_factory):
    """A tiny invert model (5 steps on lengths 1-4, 12 memory rows), exported dynamic: the page
    is under test, not the learning."""
    pytest.importorskip("tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    root = tmp_path_factory.mktemp("invert-page")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PLUGIN_DIR))  # the registry finds the plug-in's dist-info
        from ntm.training.config import TrainConfig
        from ntm.export.exporter import export_run
        from ntm.training.runs import Run
        from ntm.training.trainer import Trainer

        tc = TrainConfig(task="invert", max_length=4, batch_size=4, steps=5, eval_every=5,
                         eval_size=8, checkpoint_every=5, log_every=5, target_error=-1)
        Trainer(Run.create(root / "run", tc, memory_size=12, memory_width=6,
                           controller_size=16)).run()
        return export_run(root / "run", "onnx", out=root / "invert.onnx").path


@pytest.fixture(scope="module")
def server(invert_export):
    from ntm.serving.models import bundled_models

    copy = bundled_models()["copy"]
    process = ServerProcess(["--model", f"copy={copy}", "--model", f"invert={invert_export}"],
                            env=plugin_env())
    yield process
    assert process.stop() == 0


@pytest.fixture(scope="module")
def example(server) -> dict:
    """The invert task's example request, as the page gets it."""
    cards = httpx.get(server.url + "/page/cards.json", timeout=30).json()["models"]
    return cards["invert"]["task"]["example"]


def open_invert(visit, server) -> Visit:  # noqa: F811 (the fixture, passed in)
    v = visit(server.url + "/")
    v.wait_for_models()
    v.page.select_option("[data-testid=model]", "invert")
    v.page.wait_for_selector(f"{REQUEST_JSON}:visible")
    return v


def predict_requests(v: Visit) -> list[str]:
    """Every task API call the page makes from now on."""
    sent: list[str] = []
    v.page.on("request", lambda r: ":predict" in r.url and sent.append(r.url))
    return sent


def test_cards_describe_the_plugin_task_with_its_own_example(server, example, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    from ntm_invert import InvertTask

    from ntm.serving.page import task_description

    cards = httpx.get(server.url + "/page/cards.json", timeout=30).json()["models"]
    task = cards["invert"]["task"]
    # built by the task, seeded: the same in this process as in the server's
    assert task == task_description(InvertTask(train_lengths=(1, 4)))
    assert (task["name"], task["training_range"], task["request_keys"]) == \
        ("invert", "length 1-4", ["flip"])
    assert 1 <= len(example["flip"]) <= 4 and cards["invert"]["card"] is None
    assert cards["copy"]["task"]["request_keys"] == ["sequence"] and cards["copy"]["card"]
    # a request the server answers, inside the training range
    r = httpx.post(f"{server.url}/v1/models/invert:predict", json={"instances": [example]},
                   timeout=60)
    assert r.status_code == 200 and r.json()["predictions"][0]["within_training_range"], r.text


def test_an_example_the_task_cannot_build_leaves_the_page_up(monkeypatch):
    """A plug-in's example with NumPy in it is made plain JSON; one that raises is reported,
    not raised: the server must start and serve the page anyway."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    import numpy as np
    from ntm_invert import InvertTask

    from ntm.serving.page import example_difficulty, task_description

    class NumpyExample(InvertTask):
        def request_example(self, rng, difficulty):
            return {"flip": np.ones((difficulty.length, 8), np.int64)}, {}

    class BrokenExample(InvertTask):
        def request_example(self, rng, difficulty):
            raise RuntimeError("no example today")

    assert example_difficulty(InvertTask(train_lengths=(3, 9))).length == 6
    assert task_description(NumpyExample(train_lengths=(1, 4)))["example"] == \
        {"flip": [[1] * 8] * 2}
    broken = task_description(BrokenExample())
    assert broken["example"] is None and broken["training_range"] == "length 1-10"
    assert broken["example_error"] == "RuntimeError: no example today"


def test_a_plugin_model_runs_from_the_json_editor(server, example, visit):  # noqa: F811
    v = visit(server.url + "/")
    v.wait_for_models()
    table = v.page.inner_text("#models")
    assert "invert" in table and "length 1-4" in table
    assert v.page.is_hidden(REQUEST_JSON)  # copy is selected: its bit editor, not JSON
    v.page.select_option("[data-testid=model]", "invert")
    v.page.wait_for_selector(f"{REQUEST_JSON}:visible")
    assert v.page.is_hidden("[data-testid=input]") and v.page.is_hidden("#random")
    assert json.loads(v.page.input_value(REQUEST_JSON)) == example
    assert "trained on length 1-4" in v.page.inner_text("#range")

    with v.page.expect_response(lambda r: r.url.endswith(":predict")) as response:
        request = v.run()
    assert v.sent.url == f"{server.url}/v1/models/invert:predict"
    assert request == {**example, "return_attention": True}
    answer = response.value.json()["predictions"][0]
    assert len(answer["output"]) == len(example["flip"])

    text = v.page.inner_text(ANSWER_JSON)
    shown = json.loads(text)
    assert shown["output"] == answer["output"]
    assert shown == {k: value for k, value in answer.items() if k != "attention"}
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    assert all(json.dumps(row, separators=(",", ":")) in lines  # one line per vector
               for row in answer["output"]), text
    verdict = v.verdict()
    assert "Within the training range (length 1-4)" in verdict and "12 memory rows" in verdict

    attention = v.page.locator("[data-testid=attention]")
    steps = 2 * len(example["flip"]) + 1  # the layout invert's docstring draws
    label = attention.get_attribute("aria-label")
    assert label.startswith(f"{steps} time steps: Write weightings") and "Read weightings" in label
    assert "Inputs" not in label  # the page does not guess a plug-in's layout
    assert v.page.is_hidden("#answer-line")  # nor where its answer starts
    assert v.page.evaluate("""() => {
        const c = document.querySelector('[data-testid=attention]');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] === 255 && d[i] < 255) painted++;
        return painted / (c.width * c.height);
    }""") > 0.02  # the heatmaps hold more than their titles and ticks
    assert v.errors == []


def test_json_that_does_not_parse_is_shown_and_not_sent(server, example, visit):  # noqa: F811
    v = open_invert(visit, server)
    sent = predict_requests(v)
    v.page.fill(REQUEST_JSON, '{"flip": [[1, 0, 1')
    v.page.click(RUN)
    v.page.wait_for_selector(f"{ERROR}:visible")
    assert "not valid JSON, so nothing was sent" in v.page.inner_text(ERROR)
    v.page.fill(REQUEST_JSON, "[[1, 0, 1, 0, 1, 0, 1, 0]]")
    v.page.click(RUN)
    v.page.wait_for_selector(f"{ERROR}:has-text('must be a JSON object')")
    # run() checks the JSON before it sends anything, so by now a request would have gone
    assert sent == [] and v.page.get_attribute("#result", "data-runs") == "0"

    v.page.click("#example")  # back to the task's example, which runs
    assert json.loads(v.page.input_value(REQUEST_JSON)) == example
    v.run()
    assert v.page.is_hidden(ERROR) and len(sent) == 1
    assert v.errors == []


def test_a_request_the_server_refuses_shows_its_message(server, visit):  # noqa: F811
    v = open_invert(visit, server)
    v.page.fill(REQUEST_JSON, json.dumps({"flip": [[1] * 9]}))  # invert takes 8 bits
    with v.page.expect_response(lambda r: r.url.endswith(":predict")) as response:
        v.page.click(RUN)
    assert response.value.status == 400
    message = response.value.json()["error"]
    assert "flip[0]" in message
    error = v.page.locator(ERROR)
    error.wait_for(state="visible")
    assert error.inner_text() == f"The server refused the request (400): {message}"
    assert v.page.get_attribute("#result", "data-runs") == "0"
    # the browser logs the refused call as a network error, not a JavaScript one
    assert all("400" in e for e in v.errors), v.errors


def test_the_built_in_editor_comes_back_and_drafts_are_kept(server, visit):  # noqa: F811
    v = open_invert(visit, server)
    draft = json.dumps({"flip": [[1, 0, 0, 0, 0, 0, 0, 1]]})
    v.page.fill(REQUEST_JSON, draft)
    v.page.select_option("[data-testid=model]", "copy")
    v.page.wait_for_selector("[data-testid=input]:visible")
    assert v.page.is_hidden(REQUEST_JSON) and v.page.is_visible("#random")
    request = v.run()
    assert v.output_vectors() == request["sequence"] and "Right:" in v.verdict()
    assert v.page.locator(ANSWER_JSON).count() == 0 and v.page.is_visible("#answer-line")
    v.page.select_option("[data-testid=model]", "invert")
    v.page.wait_for_selector(f"{REQUEST_JSON}:visible")
    assert v.page.input_value(REQUEST_JSON) == draft
    assert v.errors == []
