"""The serving tests run on the fused engine wherever the kernel is built (``--engine auto``
takes the bundled models' fused twins); here they run again on the standard engine, in a
process that cannot find the kernel, so both engines pass the same suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_serving_suite_passes_on_the_standard_engine(tmp_path, kernel_library):
    env = {**os.environ, "NTM_OPS_LIBRARY": str(tmp_path / "no-kernel-here.so")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-W", "ignore::RuntimeWarning", str(REPO / "tests" / "serving")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
