"""The Python library as the README shows it: the snippet under "## Python library" runs as
written and prints what the README says it prints; ``ntm.load`` stays cheap to reach."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

import pytest

import ntm
from ntm.serving.models import standard_twin
from ntm.serving.errors import BadRequest, NotFound, ServingError
from ntm.serving.plane import predict_tasks
from tests.serving.conftest import REPO


def readme_snippet() -> str:
    """The one ```python block of the README's "## Python library" section."""
    section = re.search(r"^## Python library\n(.*?)^## ", (REPO / "README.md").read_text(),
                        re.S | re.M)
    assert section, "README.md has no '## Python library' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), re.S | re.M)
    assert len(blocks) == 1, f"expected one python block, found {len(blocks)}"
    return blocks[0]


def test_the_readme_snippet_runs_and_prints_what_it_says(bundled):
    code = readme_snippet()
    promised = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (Python library)", "exec"), {})
    assert out.getvalue().strip().splitlines() == promised


def test_the_library_answers_as_the_cli_and_server_do(bundled):
    request = {"items": [[[1, 0, 1, 0, 1, 0]] * 3, [[0, 1, 1, 0, 0, 1]] * 3,
                         [[1, 1, 0, 0, 1, 1]] * 3], "query": [[0, 1, 1, 0, 0, 1]] * 3}
    with ntm.load("recall") as model:
        assert model.name == "recall" and model.task.name == "recall"
        assert standard_twin(model.path) == bundled["recall"]  # or its fused twin
        assert model.describe()["task"] == "recall"
        # one request, a list, or the envelope: the same schema as the HTTP API
        [one] = model.predict(request)
        assert model.predict([request]) == model.predict({"instances": [request]}) == [one]
        assert one["item"] == [[1, 1, 0, 0, 1, 1]] * 3 and one["memory_size"] == 128
        assert one == predict_tasks(model.runtime, [request])[0]
        with pytest.raises(BadRequest, match=r"^query: "):
            model.predict({"items": request["items"], "query": 3})
    with pytest.raises(ServingError, match="closed"):
        model.predict(request)


def test_load_options_and_errors(bundled):
    model = ntm.load(bundled["copy"], name="mine", max_memory_size=128)
    assert model.name == "mine" and model.runtime.options.max_memory_size == 128
    with pytest.raises(ServingError, match="rows"):
        model.predict({"sequence": [[0] * 8] * 300})  # needs 256 rows
    model.close()
    with pytest.raises(TypeError, match="unknown option 'threads'; options: intra_op_threads"):
        ntm.load("copy", threads=2)
    with pytest.raises(NotFound, match="unknown model 'nosuch'"):
        ntm.load("nosuch")


def test_import_ntm_stays_cheap():
    """``import ntm`` loads neither onnxruntime nor the serving package: ``ntm.load`` does."""
    code = ("import sys, ntm\nassert callable(ntm.load)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('onnxruntime', 'ntm.'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr[-2000:]


def test_close_releases_every_session(bundled):
    model = ntm.load("copy", large_batch_threads=2)
    assert model.runtime.session is not None and model.runtime.large_session is not None
    model.close()
    assert model.runtime.session is None and model.runtime.large_session is None
