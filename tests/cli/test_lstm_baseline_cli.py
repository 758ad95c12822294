"""``ntm train --model lstm``, then ``ntm evaluate`` and ``--resume`` on the run, as for the NTM;
what the baseline cannot do is one line naming why."""

import json

import pytest
from click.testing import CliRunner

from ntm.cli.main import cli

pytest.importorskip("tensorflow")

TINY = ["--model", "lstm", "--lstm-layers", "2", "--lstm-units", "12", "--batch-size", "4",
        "--eval-every", "5", "--checkpoint-every", "5", "--log-every", "5", "--eval-size", "8"]


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "copy-lstm"
    result = CliRunner().invoke(cli, ["train", "--task", "copy", "--out", str(out),
                                      "--steps", "10", "--max-length", "4", *TINY])
    assert result.exit_code == 0, result.output
    assert "LSTM baseline 2 x 12" in result.output
    return out


def test_train_writes_a_baseline_run(baseline_run):
    config = json.loads((baseline_run / "config.json").read_text())
    assert (config["model"]["architecture"], config["model"]["lstm_units"]) == ("lstm", 12)
    assert (config["train"]["write_entropy"], config["train"]["memory_noise"]) == (0, 0)
    summary = json.loads((baseline_run / "summary.json").read_text())
    assert summary["step"] == 10 and summary["stopped"] == "steps"


def test_evaluate_gives_the_table_without_memory_rows(baseline_run, tmp_path):
    out = tmp_path / "table.json"
    result = CliRunner().invoke(cli, ["evaluate", str(baseline_run), "--points", "2,8",
                                      "-n", "4", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "bits/seq" in result.output and "rows" not in result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["length"] for r in rows] == [2, 8] and rows[0]["memory_size"] is None


def test_resume_continues_the_baseline(baseline_run):
    result = CliRunner().invoke(cli, ["train", "--task", "copy", "--out", str(baseline_run),
                                      "--resume", "--steps", "15"])
    assert result.exit_code == 0, result.output
    assert "at step 10 (LSTM baseline 2 x 12" in result.output
    assert json.loads((baseline_run / "summary.json").read_text())["step"] == 15


@pytest.mark.parametrize("args, message", [
    (["train", "--task", "copy", "--model", "lstm", "--memory-size", "64"],
     "'--memory-size': memory_size is not a setting of the LSTM baseline"),
    (["train", "--task", "copy", "--model", "lstm", "--memory-noise", "0.5"],
     "'--memory-noise': memory_noise 0.5: the LSTM baseline has no"),
    (["train", "--task", "copy", "--lstm-units", "64"],
     "'--lstm-units': lstm_units is not a setting of the NTM"),
])
def test_a_setting_of_the_other_network_is_a_one_line_usage_error(args, message, tmp_path):
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_the_baseline_keeps_its_network_on_resume_and_has_no_memory_to_evaluate_with(
        baseline_run, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--task", "copy", "--out", str(baseline_run),
                                      "--resume", "--model", "ntm"])
    assert result.exit_code == 2 and "saved architecture='lstm'" in result.output
    result = CliRunner().invoke(cli, ["evaluate", str(baseline_run), "--memory-size", "64"])
    assert result.exit_code == 2 and "the LSTM baseline has no memory" in result.output
    result = CliRunner().invoke(cli, ["export", str(baseline_run), "--max-memory-size", "64",
                                      "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "the LSTM baseline has no memory" in result.output
    assert not (tmp_path / "m.onnx").exists()
