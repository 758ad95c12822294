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
