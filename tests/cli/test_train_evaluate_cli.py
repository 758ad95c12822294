"""``ntm train`` and ``ntm evaluate`` through Click's CliRunner: happy path and bad input."""

import json

import pytest
from click.testing import CliRunner

from ntm.cli.main import cli

pytest.importorskip("tensorflow")

TINY = ["--memory-size", "12", "--memory-width", "6", "--controller-size", "16",
        "--batch-size", "4", "--eval-every", "5", "--checkpoint-every", "5", "--log-every", "5",
        "--eval-size", "8"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "copy"
    result = CliRunner().invoke(cli, ["train", "--task", "copy", "--out", str(out),
                                      "--steps", "10", "--max-length", "4", *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "ntm, version" in result.output


def test_train_writes_a_run(trained_run):
    assert (trained_run / "checkpoints" / "checkpoint").is_file()
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["step"] == 10 and summary["stopped"] == "steps"


def test_resume_continues_and_may_extend_steps(trained_run):
    result = CliRunner().invoke(cli, ["train", "--task", "copy", "--out", str(trained_run),
                                      "--resume", "--steps", "15"])
    assert result.exit_code == 0, result.output
    assert "at step 10" in result.output
    assert json.loads((trained_run / "summary.json").read_text())["step"] == 15


def test_evaluate_table_and_json(trained_run, tmp_path):
    out = tmp_path / "table.json"
    result = CliRunner().invoke(cli, ["evaluate", str(trained_run), "--points", "2,5",
                                      "-n", "4", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "bits/seq" in result.output
    table = json.loads(out.read_text())
    rows = table["rows"]
    assert [r["length"] for r in rows] == [2, 5] and rows[0]["sequences"] == 4
    assert table["train_lengths"] == [1, 4] and table["train_repeats"] is None


def test_evaluate_gives_each_point_the_rows_it_needs_or_the_rows_asked_for(trained_run,
                                                                           tmp_path):
    """Trained with 12 rows: a copy of 10 needs 12 rows, of 11 needs 13 -> 24, of 40 -> 48."""
    out = tmp_path / "auto.json"
    result = CliRunner().invoke(cli, ["evaluate", str(trained_run), "--points", "10,11,40",
                                      "-n", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert [r["memory_size"] for r in json.loads(out.read_text())["rows"]] == [12, 24, 48]
    assert result.output.splitlines()[1].split()[-1] == "rows"
    result = CliRunner().invoke(cli, ["evaluate", str(trained_run), "--points", "10,40",
                                      "-n", "2", "--memory-size", "96", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert [r["memory_size"] for r in json.loads(out.read_text())["rows"]] == [96, 96]


@pytest.mark.parametrize("args, code, message", [
    (["train", "--task", "sort"], 2, "Invalid value for '--task'"),
    (["evaluate", "--memory-size", "0"], 2, "0 rows: the memory needs at least one"),
    (["train", "--min-length", "5", "--max-length", "3"], 2, "impossible"),
    (["train", "--memory-size", "8"], 2, "too small for copy at length 1-20: its longest training sequence needs 22"),
    (["train", "--batch-size", "0"], 2, "--batch-size"),
    (["train", "--threads", "0"], 2, "0 threads: at least one must run"),
    (["train", "--threads", "many"], 2, "'many' is neither 'auto' nor an integer"),
    (["train", "--shift-range", "9", "--memory-size", "8", "--max-length", "4"], 2, "shift_range"),
    (["train", "--controller", "feedforward", "--controller-noise", "0.1"], 2,
     "controller_noise needs the lstm controller"),
    (["train", "--controller-noise", "-1"], 2, "--controller-noise"),
    (["train", "--task", "recall", "--blank-runs", "0.3"], 2,
     "blank_runs: the recall task cannot blank runs of its items (copy can)"),
    (["train", "--blank-runs", "1.5"], 2, "--blank-runs"),
    (["train", "--resume", "--out", "/nonexistent/run"], 2, "no checkpoint"),
    (["evaluate", "/nonexistent/run"], 1, "does not exist"),
])
def test_bad_input_gives_one_line_errors(args, code, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_existing_run_is_not_overwritten(trained_run):
    result = CliRunner().invoke(cli, ["train", "--out", str(trained_run), "--steps", "1"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_resume_refuses_to_change_the_model(trained_run):
    result = CliRunner().invoke(cli, ["train", "--out", str(trained_run), "--resume",
                                      "--batch-size", "7"])
    assert result.exit_code == 2 and "batch_size" in result.output


def test_evaluate_rejects_corrupt_runs(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").write_text("garbage")
    result = CliRunner().invoke(cli, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1 and "corrupt" in result.output
    assert "Traceback" not in result.output


def test_evaluate_rejects_missing_checkpoint_files(trained_run, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    for f in (broken / "checkpoints").glob("ckpt-*"):
        f.unlink()
    result = CliRunner().invoke(cli, ["evaluate", str(broken)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_evaluate_rejects_bad_points(trained_run):
    result = CliRunner().invoke(cli, ["evaluate", str(trained_run), "--points", "ten"])
    assert result.exit_code == 2 and "--points" in result.output


def test_evaluate_and_export_use_the_checkpoint_asked_for(tmp_path):
    """A run keeping the checkpoints of steps 5 and 10: --checkpoint 5 evaluates and exports
    step 5's weights; a step it does not keep is a one-line error listing those it keeps."""
    import onnx

    from ntm.contract import metadata

    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--task", "copy", "--out", str(run), "--steps",
                                      "10", "--max-length", "4", *TINY])
    assert result.exit_code == 0, result.output
    tables = {}
    for step in (5, 10):
        out = tmp_path / f"eval{step}.json"
        result = CliRunner().invoke(cli, ["evaluate", str(run), "--checkpoint", str(step),
                                          "--points", "4", "-n", "8", "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert f"at step {step} " in result.output
        tables[step] = json.loads(out.read_text())
        assert tables[step]["step"] == step
    latest = CliRunner().invoke(cli, ["evaluate", str(run), "--points", "4", "-n", "8"])
    assert "at step 10 " in latest.output
    assert (tables[5]["sequences_seen"], tables[10]["sequences_seen"]) == (20, 40)  # batch 4
    result = CliRunner().invoke(cli, ["evaluate", str(run), "--checkpoint", "7"])
    assert result.exit_code == 1 and "keeps no checkpoint of step 7 (kept: 5, 10)" in result.output
    assert "Traceback" not in result.output
    onnx_file = tmp_path / "five.onnx"
    result = CliRunner().invoke(cli, ["export", str(run), "--checkpoint", "5", "-o",
                                      str(onnx_file)])
    assert result.exit_code == 0, result.output
    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert metadata.decode(props)["ntm.training"]["step"] == 5


def test_a_resume_without_task_names_the_runs_task(tmp_path):
    """--task defaults to copy; resuming another task's run without it trains and reports the
    run's own task."""
    out = tmp_path / "sort"
    tiny = ["--memory-size", "32", "--memory-width", "4", "--controller-size", "8",
            "--eval-every", "1000", "--eval-size", "4", "--target-error", "-1"]
    first = CliRunner().invoke(cli, ["train", "--task", "priority-sort", "--out", str(out),
                                     "--steps", "2", *tiny])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume", "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming priority-sort in {out} at step 2" in resumed.output
