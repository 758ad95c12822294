"""The suite does not read the user's files: in a checkout whose runs/ holds a run and whose
exports/ holds an export named like a bundled model (a different model: the recall model
saved as exports/copy/copy.onnx), the tests that start servers, load models by name and
export runs still pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SELECTED = ["tests/serving/test_sequences.py", "tests/serving/test_workers.py",
            "tests/serving/test_library.py", "tests/serving/test_predict_cli.py",
            "tests/test_benchmarks_small.py::test_long_sequences_small"]


def test_the_suite_ignores_runs_and_exports_in_the_checkout(tmp_path):
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode:  # not a git checkout: copy the test and product folders
        files = [p.relative_to(REPO) for p in REPO.rglob("*") if p.is_file()
                 and not {".git", ".venv", "runs", "exports"} & set(p.relative_to(REPO).parts)]
    else:
        files = [Path(f) for f in listed.stdout.splitlines()]
    checkout = tmp_path / "checkout"
    for f in files:
        if (REPO / f).is_file():
            (checkout / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, checkout / f)
    (checkout / "exports" / "copy").mkdir(parents=True)
    shutil.copy(REPO / "ntm" / "pretrained" / "recall.onnx",
                checkout / "exports" / "copy" / "copy.onnx")
    run_dir = checkout / "runs" / "copy"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text('{"stopped": "not a real run"}')
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           *SELECTED], cwd=checkout, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
