"""The serving side never imports TensorFlow: checked in fresh processes where importing it
would fail outright (a blocking ``tensorflow`` module shadows the real one)."""

import os
import subprocess
import sys
import textwrap

import httpx

from tests.serving.conftest import EXAMPLES, REPO, ServerProcess


def blocked_env(tmp_path):
    (tmp_path / "tensorflow.py").write_text("raise ImportError('TensorFlow is blocked here')\n")
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}


def test_import_serving_and_predict_without_tensorflow(tmp_path, bundled):
    code = textwrap.dedent(f"""
        import sys
        import ntm.serving, ntm.serving.app, ntm.serving.runtime, ntm.serving.batcher, ntm.serving.v2codec
        from click.testing import CliRunner
        from ntm.cli.main import cli
        result = CliRunner().invoke(cli, ["predict", {str(EXAMPLES / "recall.json")!r}])
        assert result.exit_code == 0, result.output
        assert "tensorflow" not in sys.modules
        print("clean")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **blocked_env(tmp_path)}, cwd=tmp_path, timeout=120)
    assert run.stdout.strip() == "clean", run.stderr[-3000:]


def test_serve_runs_without_tensorflow(tmp_path, bundled):
    server = ServerProcess(["--model", "recall"], env=blocked_env(tmp_path))
    try:
        r = httpx.post(f"{server.url}/v1/models/recall:predict",
                       content=(EXAMPLES / "recall.json").read_bytes(), timeout=30)
        assert r.status_code == 200, r.text
    finally:
        assert server.stop() == 0


def test_ntm_help_is_instant_and_tensorflow_free(tmp_path):
    run = subprocess.run([sys.executable, "-m", "ntm.cli.main", "--help"], capture_output=True,
                         text=True, env={**os.environ, **blocked_env(tmp_path)}, cwd=REPO,
                         timeout=60)
    assert run.returncode == 0 and "train" in run.stdout and "serve" in run.stdout
