"""The kernel built with AddressSanitizer and UndefinedBehaviorSanitizer runs the parity and
bad-input tests in a process of its own (libasan and libstdc++ preloaded: Python is not
linked with them, and onnxruntime throws C++ exceptions the sanitizer must intercept)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ntm.cli.main import cli

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.mark.slow
def test_parity_and_bad_input_under_the_sanitizers(tmp_path, kernel_library):
    from ntm.kernel.build import BuildError, build, sanitizer_preload

    if shutil.which("g++") is None:
        pytest.skip("no g++ here")
    try:
        library = build(tmp_path / "libntm_ops.so", sanitize=True)
    except BuildError as err:
        pytest.fail(str(err))
    symbols = subprocess.run(["nm", "-D", str(library)], capture_output=True, text=True).stdout
    assert "__asan_report" in symbols and "__ubsan_handle" in symbols
    env = {**os.environ, "NTM_OPS_LIBRARY": str(library),
           "LD_PRELOAD": f"{sanitizer_preload()} {sanitizer_preload('g++', 'libstdc++.so')}",
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         str(HERE / "test_fused_parity.py"), str(HERE / "test_fused_inputs.py")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "passed" in run.stdout and "ERROR: AddressSanitizer" not in run.stderr


def test_build_kernel_names_a_headers_folder_without_headers(tmp_path):
    result = CliRunner().invoke(cli, ["build-kernel", "--headers", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: --headers {tmp_path}: no onnxruntime_cxx_api.h "
                                     f"under it")
