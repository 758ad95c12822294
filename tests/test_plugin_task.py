"""A task from outside the package goes through all five commands.

``tests/plugin_task/`` holds ``ntm_invert`` (bit inversion, a ``ntm.contract.tasks.Task``
subclass) and a hand-written ``ntm_invert-0.1.dist-info`` whose ``entry_points.txt`` declares it
in the ``ntm.tasks`` group: with that folder on sys.path, importlib.metadata finds it as if it
were installed. Nothing in ntm names it.

train, evaluate, export and predict run in process through Click's CliRunner, with the folder
put on sys.path *after* the CLI was imported (as a plug-in installed while a process runs);
serve runs as a real process with the folder on PYTHONPATH. The commands run in a temporary
directory, so ``ntm export``'s default ``exports/invert/invert.onnx`` and ``ntm predict``'s
model lookup by the task's name work as for a user, away from the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ntm.cli.main import cli  # before the plug-in folder is on sys.path (see `work`)
from tests.serving.conftest import ServerProcess, metric, wait_until

pytest.importorskip("tensorflow")

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin_task"
REPO = Path(__file__).resolve().parents[1]
# A small model and a short run: this proves the route, not the learning (as in
# tests/cli/test_train_evaluate_cli.py).
TINY = ["--memory-size", "12", "--memory-width", "6", "--controller-size", "16",
        "--batch-size", "4", "--eval-every", "5", "--checkpoint-every", "5", "--log-every", "5",
        "--eval-size", "8", "--steps", "10", "--max-length", "4"]
BITS = 8  # InvertTask's default width
SEQ = [[1, 0, 0, 1, 0, 0, 0, 0], [1, 0, 1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 0, 1, 1, 1]]


def plugin_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PLUGIN_DIR), *filter(None, [os.environ.get("PYTHONPATH")])])}


def bit_matrix(value, rows: int) -> bool:
    return (isinstance(value, list) and len(value) == rows
            and all(len(row) == BITS and set(row) <= {0, 1} for row in value))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The working directory, with the plug-in folder on sys.path, for the whole module."""
    directory = tmp_path_factory.mktemp("invert")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PLUGIN_DIR))
        mp.chdir(directory)
        yield directory


@pytest.fixture(scope="module")
def trained(work):
    """``ntm train --task invert`` in process; if this process's CLI rejects the plug-in (its
    task choices fixed when cli/train.py was imported), the same command in a fresh process,
    so the later commands still run (test_train_in_process_sees_a_plugin_added_later says
    which happened)."""
    run = work / "runs" / "invert"
    args = ["train", "--task", "invert", "--out", str(run), *TINY]
    result = CliRunner().invoke(cli, args)
    in_process = result.exit_code == 0
    if not in_process:
        assert result.exit_code == 2 and "--task" in result.output, result.output
        proc = subprocess.run([sys.executable, "-m", "ntm.cli.main", *args], cwd=work,
                              env=plugin_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {"run": run, "in_process": in_process, "output": result.output}


def test_the_plugin_is_found_and_unknown_tasks_are_still_rejected(work):
    from ntm.contract.tasks import get_task, guess_task, task_names

    assert {"copy", "invert", "recall", "repeat-copy"} <= set(task_names())
    task = get_task("invert")
    assert (task.input_size, task.output_size, task.train_lengths) == (BITS + 1, BITS, (1, 10))
    assert guess_task({"flip": SEQ}) == "invert" and guess_task({"sequence": SEQ}) == "copy"
    with pytest.raises(ValueError, match=r"unknown task 'sort'.*'invert'"):
        get_task("sort")
    result = CliRunner().invoke(cli, ["train", "--task", "sort", "--out", str(work / "sort")])
    assert result.exit_code == 2 and "sort" in result.output and "Traceback" not in result.output
    assert not (work / "sort").exists()


def test_a_plugin_does_not_take_a_built_in_tasks_requests(work, monkeypatch):
    """A plug-in with copy's request field: copy requests still go to copy (before the tie
    rule, the name sorting last won: "zcopy" took examples/copy.json); two plug-ins alike are
    ambiguous, so ntm predict asks for --model."""
    from ntm.contract.tasks import registry
    from ntm_invert import InvertTask

    def plugin(name: str, keys: tuple[str, ...]) -> type:
        return type(name, (InvertTask,), {"name": name, "request_keys": keys})

    found = {"zcopy": plugin("zcopy", ("sequence",)), "alike": plugin("alike", ("flip",)),
             "invert": InvertTask}
    monkeypatch.setattr(registry, "_plugged_in", lambda: found)
    assert registry.guess_task({"sequence": SEQ}) == "copy"
    assert registry.guess_task({"flip": SEQ}) is None
    del found["alike"]
    assert registry.guess_task({"flip": SEQ}) == "invert"


def test_train_writes_an_invert_run(trained):
    run = trained["run"]
    assert (run / "checkpoints" / "checkpoint").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 10 and summary["stopped"] == "steps"
    config = json.loads((run / "config.json").read_text())
    assert "invert" in json.dumps(config), config


def test_train_in_process_sees_a_plugin_added_later(trained):
    assert trained["in_process"], trained["output"]
    assert "training invert" in trained["output"]


def test_evaluate_uses_the_tasks_own_points(trained):
    out = trained["run"].parent / "table.json"
    result = CliRunner().invoke(cli, ["evaluate", str(trained["run"]), "-n", "2",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"invert run {trained['run']} at step 10")
    table = json.loads(out.read_text())
    assert table["task"] == "invert" and table["train_lengths"] == [1, 4]
    # InvertTask.default_eval_points, each with the rows it needs (trained with 12)
    assert [(r["length"], r["memory_size"]) for r in table["rows"]] == [
        (5, 12), (10, 12), (20, 24), (40, 48)]
    assert all(0 <= r["mean_bits"] <= BITS * r["length"] for r in table["rows"]), table["rows"]


@pytest.fixture(scope="module")
def exported(trained, work):
    """``ntm export RUN --format onnx``: dynamic, to its default place under the working
    directory."""
    result = CliRunner().invoke(cli, ["export", str(trained["run"]), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    path = work / "exports" / "invert" / "invert.onnx"
    return {"path": path, "output": result.output}


def test_export_verifies_and_records_the_task(exported):
    import onnxruntime as ort

    assert "(dynamic)" in exported["output"] and exported["output"].rstrip().endswith("verified")
    meta = ort.InferenceSession(str(exported["path"]), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    task = json.loads(meta["ntm.task"])
    assert task["task"] == "invert" and task["train_lengths"] == [1, 4]
    assert (task["input_size"], task["output_size"]) == (BITS + 1, BITS)


def test_predict_finds_the_model_by_the_requests_fields(exported, work):
    request = work / "invert.json"
    request.write_text(json.dumps([{"flip": SEQ}, {"flip": SEQ * 4}]))
    result = CliRunner().invoke(cli, ["predict", str(request)])  # no --model: guessed
    assert result.exit_code == 0, result.output
    short, long = json.loads(result.stdout)["predictions"]
    assert bit_matrix(short["output"], 3) and bit_matrix(long["output"], 12)
    assert len(short["probabilities"]) == 3 and \
        all(0 <= p <= 1 for row in short["probabilities"] for p in row)
    assert (short["within_training_range"], short["memory_size"]) == (True, 12)
    assert (long["within_training_range"], long["memory_size"]) == (False, 24)

    pretty = CliRunner().invoke(cli, ["predict", str(request), "--pretty"])
    assert pretty.exit_code == 0, pretty.output
    assert f"request 0 (invert, model {Path('exports/invert/invert.onnx')})" in pretty.output
    assert "output is the input inverted:" in pretty.output  # the task's own rendering

    bad = CliRunner().invoke(cli, ["predict", "-"], input=json.dumps({"flop": SEQ}))
    assert bad.exit_code == 1 and "invert: flip" in bad.output  # the known tasks' fields
    wrong = CliRunner().invoke(cli, ["predict", "-"], input=json.dumps({"flip": [[2] * BITS]}))
    assert wrong.exit_code == 1 and "flip[0][0]: must be 0 or 1" in wrong.output


def test_the_model_needs_its_plugin(exported, work):
    """Without the plug-in installed the exported model is refused, naming its task."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-m", "ntm.cli.main", "predict", "invert.json",
                          "--model", str(exported["path"])], cwd=work, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "invert" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_serve_answers_the_plugin_task(exported):
    server = ServerProcess(["--model", f"invert={exported['path']}"], env=plugin_env())
    try:
        assert any("model invert: invert, dynamic" in line for line in server.lines)
        url = f"{server.url}/v1/models/invert:predict"
        r = httpx.post(url, json={"instances": [{"flip": SEQ}, {"flip": SEQ * 4}]}, timeout=60)
        assert r.status_code == 200, r.text
        short, long = r.json()["predictions"]
        assert bit_matrix(short["output"], 3) and bit_matrix(long["output"], 12)
        assert (short["within_training_range"], short["memory_size"]) == (True, 12)
        assert (long["within_training_range"], long["memory_size"]) == (False, 24)
        # the same answer as ntm predict gives in process
        local = CliRunner().invoke(cli, ["predict", "-", "--model", str(exported["path"])],
                                   input=json.dumps({"flip": SEQ}))
        assert json.loads(local.stdout)["predictions"][0]["output"] == short["output"]

        bad = httpx.post(url, json={"instances": [{"flip": [[1] * (BITS + 1)]}]}, timeout=60)
        assert bad.status_code == 400 and "flip[0]" in bad.json()["error"], bad.text
        missing = httpx.post(f"{server.url}/v1/models/sort:predict",
                             json={"instances": [{"flip": SEQ}]}, timeout=60)
        assert missing.status_code == 404, missing.text
        wait_until(lambda: metric(server.metrics(), "ntm_requests_total",
                                  'model="invert",protocol="v1",status="200"') >= 1,
                   "the answered request in /metrics", timeout=30)
    finally:
        assert server.stop() == 0
