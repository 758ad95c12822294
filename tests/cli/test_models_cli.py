"""``ntm models``: every bundled model and export, and which one each name serves."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from ntm.cli.main import cli
from ntm.serving.models import bundled_models


def test_an_export_is_marked_as_what_its_name_serves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports" / "copy").mkdir(parents=True)
    shutil.copy(bundled_models()["copy"], tmp_path / "exports" / "copy" / "copy.onnx")
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("* copy") and " export " in line for line in lines)
    assert any(line.startswith("  copy") and " bundled " in line for line in lines)
    assert any(line.startswith("* recall") for line in lines)
    assert "an export replaces the bundled model of its name" in result.output
    rows = json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)
    served = {(r["name"], r["source"]): r["served"] for r in rows}
    assert served[("copy", "export")] and not served[("copy", "bundled")]
    assert served[("recall", "bundled")]


def test_every_bundled_model_gets_its_cards_headline():
    """Bars where the task has them; else the card's row at the top of the training range
    (N-grams: its cost over the optimal estimator's, not its random wrong bits)."""
    from ntm.cli.models import headline

    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    for name in bundled_models():
        line = next(x for x in result.output.splitlines() if x[2:].split()[0] == name)
        assert " bits/seq" in line and line.split("; ", 1)[1].strip(), line
    card = {"quality_bars": [], "train_lengths": [200, 200], "evaluation": [
        {"length": 200, "mean_bits": 43.1, "perfect_fraction": 0.0,
         "measures": {"cost_bits": 126.4, "optimal_bits": 123.5, "excess_bits": 2.9}}]}
    assert headline(card) == "200: 126.4 bits/seq cost, 2.90 over the optimal estimator"
    card["evaluation"][0]["measures"] = None
    assert headline(card) == "200: 43.10 bits/seq, 0% perfect"
